package rtmr

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"github.com/ppml/ppml/attest"
)

// Where Linux (6.16 and later) offers RTMR3 to a TD's user space, and where ppml keeps its log.
const (
	// SysfsRTMR3 reads as RTMR3's value; writing a 48-byte digest to it extends RTMR3.
	SysfsRTMR3 = "/sys/devices/virtual/misc/tdx_guest/measurements/rtmr3:sha384"
	// RunLog is the log of RTMR3 in a TD whose RTMR3 ppml extends through SysfsRTMR3. /run is
	// emptied at boot as RTMR3 is reset; whatever else extends RTMR3 must append its events here,
	// under an exclusive lock of the file (flock), or the log no longer replays.
	RunLog = "/run/ppml/rtmr3.log"
)

// Log is an RTMR3 event log kept in a file, and the register it describes. Extensions and
// attestations lock the file, so that the log read with a quote is the one that made its RTMR3.
type Log struct {
	Path string
	// Extend extends RTMR3 with digest.
	Extend func(digest [48]byte) error
}

// Append extends RTMR3 with e and appends e to the log. If the extension fails, the log is left
// as it was.
func (l Log) Append(e Event) error {
	if err := Validate(e); err != nil {
		return fmt.Errorf("RTMR3 event: %w", err)
	}
	f, err := l.open(syscall.LOCK_EX)
	if err != nil {
		return err
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return fmt.Errorf("RTMR3 event log %s: %w", l.Path, err)
	}
	if size+int64(len(e.String())+1) > MaxLogSize {
		return fmt.Errorf("RTMR3 event log %s is full (%d bytes): restart the TD", l.Path, size)
	}
	// The event is logged before RTMR3 is extended, and taken back if that fails: an event in
	// RTMR3 is never missing from the log.
	if _, err := f.WriteString(e.String() + "\n"); err != nil {
		f.Truncate(size)
		return fmt.Errorf("RTMR3 event log %s: %w", l.Path, err)
	}
	if err := l.Extend(e.Digest); err != nil {
		if terr := f.Truncate(size); terr != nil {
			return fmt.Errorf("extend RTMR3: %w; and the log %s keeps the event, which RTMR3 lacks: %w", err, l.Path, terr)
		}
		return fmt.Errorf("extend RTMR3: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("RTMR3 event log %s: %w", l.Path, err)
	}
	return nil
}

// While calls fn, during which RTMR3 is not extended through l, and returns the log as it
// stands then.
func (l Log) While(fn func() error) ([]byte, error) {
	f, err := l.open(syscall.LOCK_SH)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := fn(); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxLogSize+1))
	if err != nil {
		return nil, fmt.Errorf("RTMR3 event log %s: %w", l.Path, err)
	}
	if len(b) > MaxLogSize {
		return nil, fmt.Errorf("RTMR3 event log %s exceeds %d bytes", l.Path, MaxLogSize)
	}
	return b, nil
}

// open opens the log, made empty if it does not exist, and locks it (how: syscall.LOCK_SH or
// LOCK_EX).
func (l Log) open(how int) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(l.Path), 0o700); err != nil {
		return nil, fmt.Errorf("RTMR3 event log: %w", err)
	}
	f, err := os.OpenFile(l.Path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("RTMR3 event log: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		return nil, fmt.Errorf("RTMR3 event log %s: lock: %w", l.Path, err)
	}
	return f, nil
}

// An Extender extends RTMR3 and logs the event.
type Extender interface {
	ExtendRTMR3(e Event) error
}

// Attester is the attester of a TD whose RTMR3 log is Log: its evidence goes with the log
// ([attest.AttestWithLog]), and it extends RTMR3 ([Extender]).
type Attester struct {
	attest.Attester
	Log Log
}

var (
	_ attest.LogAttester = Attester{}
	_ Extender           = Attester{}
)

// ExtendRTMR3 extends RTMR3 with e and logs it.
func (a Attester) ExtendRTMR3(e Event) error { return a.Log.Append(e) }

// AttestWithLog returns evidence that binds reportData and the RTMR3 log that goes with it.
func (a Attester) AttestWithLog(reportData attest.ReportData) ([]byte, []byte, error) {
	var evidence []byte
	log, err := a.Log.While(func() (err error) {
		evidence, err = a.Attester.Attest(reportData)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	if log == nil {
		log = []byte{} // an empty log, which says RTMR3 was not extended: not no log
	}
	return evidence, log, nil
}

// Sysfs returns the attester a of a TD, with RTMR3 extended through Linux's SysfsRTMR3 and
// logged in RunLog, where this kernel offers SysfsRTMR3; else false.
func Sysfs(a attest.Attester) (Attester, bool) {
	if _, err := os.Stat(SysfsRTMR3); err != nil {
		return Attester{}, false
	}
	return Attester{Attester: a, Log: Log{Path: RunLog, Extend: WriteRegister(SysfsRTMR3)}}, true
}

// WriteRegister returns the extension of the register whose sysfs attribute is name: one write
// of the 48-byte digest, as Linux's TDX guest driver takes it.
func WriteRegister(name string) func([48]byte) error {
	return func(digest [48]byte) error {
		f, err := os.OpenFile(name, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		n, err := f.Write(digest[:])
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil && n != len(digest) {
			err = fmt.Errorf("%s took %d of %d bytes", name, n, len(digest))
		}
		return err
	}
}

// ExtenderOf returns the Extender that a is, or wraps (attest.ForWorkload, attest.WithGPUs).
func ExtenderOf(a attest.Attester) (Extender, bool) {
	for ; a != nil; a = attest.Unwrap(a) {
		if e, ok := a.(Extender); ok {
			return e, true
		}
	}
	return nil, false
}
