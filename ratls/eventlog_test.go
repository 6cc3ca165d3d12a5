package ratls

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/ppml/ppml/attest"
	"github.com/ppml/ppml/attest/rtmr"
	"github.com/ppml/ppml/attest/sim"
)

// A TD's certificate carries the log of its RTMR3, which replays to the RTMR3 of its quote;
// a log changed in any way does not.
func TestEventLogInCertificate(t *testing.T) {
	p, err := sim.InitTDX(filepath.Join(t.TempDir(), "td"), sim.TDOptions{}, "", simTime)
	if err != nil {
		t.Fatal(err)
	}
	v, err := p.Verifier()
	if err != nil {
		t.Fatal(err)
	}
	reg := attest.Registry{attest.TDX: v}
	td := p.TDAttester()
	a, b := rtmr.ManifestEvent([32]byte{1}), rtmr.ManifestEvent([32]byte{2})
	for _, e := range []rtmr.Event{a, b} {
		if err := td.ExtendRTMR3(e); err != nil {
			t.Fatal(err)
		}
	}
	cert, err := NewCertificate(attest.ForWorkload(td, [32]byte{2}))
	if err != nil {
		t.Fatal(err)
	}
	claims, err := Verify(context.Background(), cert.Leaf, reg, simTime)
	if err != nil {
		t.Fatal(err)
	}
	events, ok, err := EventLog(cert.Leaf, claims)
	if err != nil || !ok || len(events) != 2 || events[0] != a || events[1] != b {
		t.Fatalf("events %v, %v, %v", events, ok, err)
	}

	c := rtmr.ManifestEvent([32]byte{3})
	changed := b
	changed.Data = c.Data
	for name, log := range map[string][]rtmr.Event{
		"changed":           {a, changed},
		"changed, rehashed": {a, c},
		"missing":           {b},
		"extra":             {a, b, c},
		"empty":             {},
	} {
		bad := withExtension(cert.Leaf, oidEventLog, append([]byte{}, rtmr.Marshal(log)...))
		if _, _, err := EventLog(bad, claims); !errors.Is(err, rtmr.ErrNoReplay) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, _, err := EventLog(withExtension(cert.Leaf, oidEventLog, []byte("not a log")), claims); !errors.Is(err, ErrMalformed) {
		t.Errorf("malformed: %v", err)
	}
	// No log says nothing of RTMR3; a log beside evidence without RTMR3 is refused.
	if events, ok, err := EventLog(withExtension(cert.Leaf, oidEventLog, nil), claims); events != nil || ok || err != nil {
		t.Errorf("without the extension: %v, %v, %v", events, ok, err)
	}
	sgx := &attest.Claims{TEE: attest.SGX}
	if _, _, err := EventLog(cert.Leaf, sgx); !errors.Is(err, rtmr.ErrNoReplay) {
		t.Errorf("with SGX claims: %v", err)
	}
	// Gramine's part is as before: the log is an extension of its own, after the evidence.
	if !bytes.Equal(extension(cert.Leaf, oidEventLog), rtmr.Marshal([]rtmr.Event{a, b})) {
		t.Errorf("extension %q", extension(cert.Leaf, oidEventLog))
	}
	// An attester without a log sends none.
	plain, err := NewCertificate(td.Attester)
	if err != nil {
		t.Fatal(err)
	}
	if extension(plain.Leaf, oidEventLog) != nil {
		t.Error("a certificate of an attester without a log has the event log extension")
	}
	// A TD that extended nothing sends its empty log, which replays to a zero RTMR3.
	fresh, err := sim.InitTDX(filepath.Join(t.TempDir(), "fresh"), sim.TDOptions{}, "", simTime)
	if err != nil {
		t.Fatal(err)
	}
	cert, err = NewCertificate(fresh.TDAttester())
	if err != nil {
		t.Fatal(err)
	}
	v, err = fresh.Verifier()
	if err != nil {
		t.Fatal(err)
	}
	if claims, err = Verify(context.Background(), cert.Leaf, attest.Registry{attest.TDX: v}, simTime); err != nil {
		t.Fatal(err)
	}
	if events, ok, err := EventLog(cert.Leaf, claims); len(events) != 0 || !ok || err != nil {
		t.Errorf("a fresh TD: %v, %v, %v", events, ok, err)
	}
}
