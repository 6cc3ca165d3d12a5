package rtmr

import (
	"bytes"
	"crypto/sha512"
	"errors"
	"strings"
	"testing"
)

// extend is RTMR3's extension, as the TDX module does it, written out here.
func extend(r [48]byte, data string) [48]byte {
	d := sha512.Sum384([]byte(data))
	h := sha512.New384()
	h.Write(r[:])
	h.Write(d[:])
	var out [48]byte
	copy(out[:], h.Sum(nil))
	return out
}

func TestManifestEventAndReplay(t *testing.T) {
	m := [32]byte{0xab, 0xcd}
	e := ManifestEvent(m)
	if e.Type != "aael" || e.Data != "ppml manifest abcd"+strings.Repeat("0", 60) {
		t.Fatalf("event %s", e)
	}
	if got, ok := e.Manifest(); !ok || !bytes.Equal(got, m[:]) {
		t.Errorf("Manifest() = %x, %v", got, ok)
	}
	other := NewEvent("aael", "github.com/confidential-containers PullImage {}")
	events := []Event{e, other}
	want := extend(extend([48]byte{}, e.Data), other.Data)
	if got := Replay(events); got != want {
		t.Errorf("Replay = %x, want %x", got, want)
	}
	if err := Check(events, want[:]); err != nil {
		t.Errorf("Check: %v", err)
	}
	if r := Replay(nil); r != [48]byte{} {
		t.Errorf("an empty log replays to %x", r)
	}
	for _, notOurs := range []Event{other, NewEvent("ima", e.Data), NewEvent("aael", "ppml manifest ABCD"+strings.Repeat("0", 60)), NewEvent("aael", "ppml manifest abcd")} {
		if _, ok := notOurs.Manifest(); ok {
			t.Errorf("%s is taken for ppml's event", notOurs)
		}
	}
}

// A log that does not account for RTMR3, event by event, is refused: a changed event, a missing
// one, an extra one, events out of order, and a digest that is not its data's.
func TestCheckRefuses(t *testing.T) {
	a, b := ManifestEvent([32]byte{1}), ManifestEvent([32]byte{2})
	rtmr3 := Replay([]Event{a, b})
	changed := b
	changed.Data = ManifestEvent([32]byte{3}).Data
	rehashed := NewEvent(changed.Type, changed.Data)
	for name, events := range map[string][]Event{
		"changed data":      {a, changed},
		"changed, rehashed": {a, rehashed},
		"missing":           {a},
		"extra":             {a, b, b},
		"reordered":         {b, a},
		"none":              nil,
	} {
		if err := Check(events, rtmr3[:]); !errors.Is(err, ErrNoReplay) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// A digest that replays but is not its data's: the data says something RTMR3 does not.
	lying := Event{Digest: b.Digest, Type: "aael", Data: "ppml manifest " + strings.Repeat("9", 64)}
	if err := Check([]Event{a, lying}, rtmr3[:]); !errors.Is(err, ErrNoReplay) || !strings.Contains(err.Error(), "digest is not SHA-384 of its data") {
		t.Errorf("lying digest: %v", err)
	}
}

func TestParse(t *testing.T) {
	events := []Event{ManifestEvent([32]byte{1}), NewEvent("aael", "github.com/confidential-containers PullImage {\"image\":\"alpine\"}"), NewEvent("x.y_z-1", " leading space kept ")}
	b := Marshal(events)
	got, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(events) {
		t.Fatalf("%d events", len(got))
	}
	for i := range got {
		if got[i] != events[i] {
			t.Errorf("event %d: %+v, want %+v", i, got[i], events[i])
		}
	}
	if got, err := Parse(nil); err != nil || len(got) != 0 {
		t.Errorf("empty log: %v, %v", got, err)
	}

	line := ManifestEvent([32]byte{1}).String()
	digest, _, _ := strings.Cut(line, " ")
	for name, bad := range map[string]string{
		"no line feed":      line,
		"empty line":        line + "\n\n",
		"no data":           digest + " aael\n",
		"empty data":        digest + " aael \n",
		"upper-case digest": strings.ToUpper(digest) + " aael x\n",
		"short digest":      digest[2:] + " aael x\n",
		"not hex":           "zz" + digest[2:] + " aael x\n",
		"bad type":          digest + " AAEL x\n",
		"empty type":        digest + "  x\n",
		"control in data":   digest + " aael a\tb\n",
		"carriage return":   line + "\r\n",
		"non-ASCII data":    digest + " aael caf\u00e9\n",
		"long data":         digest + " aael " + strings.Repeat("a", maxData+1) + "\n",
		"long type":         digest + " " + strings.Repeat("a", maxType+1) + " x\n",
		"too many events":   strings.Repeat(digest+" a x\n", MaxEvents+1),
		"too large":         strings.Repeat(line+"\n", MaxLogSize/len(line)+1),
	} {
		if _, err := Parse([]byte(bad)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
