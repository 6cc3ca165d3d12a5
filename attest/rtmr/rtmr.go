// Package rtmr is the event log of a TDX trust domain's RTMR3, the run-time measurement register
// left to the OS: the events that extended it since the TD started, in order, which a verifier
// replays to check that they, and nothing else, made the RTMR3 of a quote.
//
// The log is text, one event per line (docs/cvm.md, "The RTMR3 event log"):
//
//	<digest: 96 hex digits> <type> <data>
//
// where digest is SHA-384 of data, type names what data is (a word of lower-case letters,
// digits, '.', '_' and '-'), and data is printable ASCII. Each extension of RTMR3 replaces it
// with SHA-384(RTMR3 ‖ digest), starting from 48 zero bytes when the TD starts. ppml's own event
// is of type "aael", Confidential Containers' Attestation Agent Event Log entry: data
// "<domain> <operation> <content>", here "ppml manifest <the manifest's measurement in hex>".
//
// The same text is kept in a file beside the register ([Log]) and carried in RA-TLS
// certificates (package ratls).
package rtmr

import (
	"bytes"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Bounds of a log: ppml adds one event per run, so a TD that runs a workload a minute for a
// week stays well under them.
const (
	MaxLogSize = 1 << 20 // bytes
	MaxEvents  = 8192
	maxType    = 64
	maxData    = 4096
)

// TypeAAEL is the type of an Attestation Agent Event Log entry: "<domain> <operation> <content>".
const TypeAAEL = "aael"

// manifestPrefix begins the data of ppml's event: domain "ppml", operation "manifest".
const manifestPrefix = "ppml manifest "

// Event is one extension of RTMR3.
type Event struct {
	Digest [48]byte // what RTMR3 was extended with: SHA-384 of Data
	Type   string
	Data   string
}

// NewEvent returns the event of data, of type typ.
func NewEvent(typ, data string) Event {
	return Event{Digest: sha512.Sum384([]byte(data)), Type: typ, Data: data}
}

// ManifestEvent is ppml's event for the workload measurement m (manifest.Measure): ppml run
// extends RTMR3 with it before it attests.
func ManifestEvent(m [32]byte) Event {
	return NewEvent(TypeAAEL, manifestPrefix+hex.EncodeToString(m[:]))
}

// Manifest returns the workload measurement that e names, if it is ppml's manifest event.
func (e Event) Manifest() ([]byte, bool) {
	if e.Type != TypeAAEL {
		return nil, false
	}
	h, ok := strings.CutPrefix(e.Data, manifestPrefix)
	if !ok || len(h) != 64 || strings.ToLower(h) != h {
		return nil, false
	}
	m, err := hex.DecodeString(h)
	return m, err == nil
}

// String is e's line in a log, without the line feed.
func (e Event) String() string {
	return hex.EncodeToString(e.Digest[:]) + " " + e.Type + " " + e.Data
}

// Marshal returns the log of events.
func Marshal(events []Event) []byte {
	var b bytes.Buffer
	for _, e := range events {
		b.WriteString(e.String())
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// ErrMalformed: a log does not parse.
var ErrMalformed = errors.New("malformed RTMR3 event log")

// Parse parses a log. It checks the form of each event, not that its digest is its data's
// ([Check] does).
func Parse(b []byte) ([]Event, error) {
	if len(b) > MaxLogSize {
		return nil, fmt.Errorf("%w: %d bytes (at most %d)", ErrMalformed, len(b), MaxLogSize)
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		return nil, fmt.Errorf("%w: the last line does not end with a line feed", ErrMalformed)
	}
	var events []Event
	for n := 1; len(b) > 0; n++ {
		if len(events) == MaxEvents {
			return nil, fmt.Errorf("%w: more than %d events", ErrMalformed, MaxEvents)
		}
		line, rest, _ := bytes.Cut(b, []byte{'\n'})
		b = rest
		e, err := parseLine(string(line))
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: %v", ErrMalformed, n, err)
		}
		events = append(events, e)
	}
	return events, nil
}

func parseLine(line string) (Event, error) {
	digest, rest, ok1 := strings.Cut(line, " ")
	typ, data, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 {
		return Event{}, errors.New("want <digest> <type> <data>")
	}
	var e Event
	if len(digest) != 2*len(e.Digest) || strings.ToLower(digest) != digest {
		return Event{}, fmt.Errorf("digest %.100q is not %d lower-case hex digits", digest, 2*len(e.Digest))
	}
	if _, err := hex.Decode(e.Digest[:], []byte(digest)); err != nil {
		return Event{}, fmt.Errorf("digest %.100q is not %d lower-case hex digits", digest, 2*len(e.Digest))
	}
	if err := checkType(typ); err != nil {
		return Event{}, err
	}
	if err := checkData(data); err != nil {
		return Event{}, err
	}
	e.Type, e.Data = typ, data
	return e, nil
}

func checkType(typ string) error {
	if typ == "" || len(typ) > maxType || strings.IndexFunc(typ, func(r rune) bool {
		return !('a' <= r && r <= 'z' || '0' <= r && r <= '9' || r == '.' || r == '_' || r == '-')
	}) >= 0 {
		return fmt.Errorf("type %.100q is not 1 to %d of a-z, 0-9, '.', '_', '-'", typ, maxType)
	}
	return nil
}

func checkData(data string) error {
	if data == "" || len(data) > maxData {
		return fmt.Errorf("data of %d bytes (want 1 to %d)", len(data), maxData)
	}
	if i := strings.IndexFunc(data, func(r rune) bool { return r < 0x20 || r > 0x7e }); i >= 0 {
		return fmt.Errorf("data byte %d is %#x, not printable ASCII", i, data[i])
	}
	return nil
}

// Replay returns what RTMR3 holds once extended with the events' digests, in order, from 48
// zero bytes.
func Replay(events []Event) [48]byte {
	var r [48]byte
	for _, e := range events {
		r = sha512.Sum384(append(r[:], e.Digest[:]...))
	}
	return r
}

// ErrNoReplay: a log does not account for the RTMR3 of the evidence it came with.
var ErrNoReplay = errors.New("RTMR3 event log does not replay")

// Check checks that events are what made rtmr3, the register's value in verified evidence:
// each event's digest is SHA-384 of its data, and replaying them gives rtmr3. Errors wrap
// ErrNoReplay.
func Check(events []Event, rtmr3 []byte) error {
	for i, e := range events {
		if sha512.Sum384([]byte(e.Data)) != e.Digest {
			return fmt.Errorf("%w: event %d (%.100s): its digest is not SHA-384 of its data", ErrNoReplay, i, e.Data)
		}
	}
	if r := Replay(events); !bytes.Equal(r[:], rtmr3) {
		return fmt.Errorf("%w: its %d events give %x, and RTMR3 is %x (an event is missing, added or changed)", ErrNoReplay, len(events), r, rtmr3)
	}
	return nil
}

// Validate checks the form of e as [Parse] checks each event of a log: an event is checked
// before it is logged.
func Validate(e Event) error {
	if err := checkType(e.Type); err != nil {
		return err
	}
	return checkData(e.Data)
}
