package attest_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/ppml/ppml/attest"
	"github.com/ppml/ppml/attest/sim"
)

// TestAnyOf trusts two simulated platforms: quotes from either verify, a third's do not.
func TestAnyOf(t *testing.T) {
	now := time.Now()
	var platforms []*sim.Platform
	var any attest.AnyOf
	for i, status := range []string{"UpToDate", "OutOfDate", "UpToDate"} {
		p, err := sim.Init(filepath.Join(t.TempDir(), "p"), status, now)
		if err != nil {
			t.Fatal(err)
		}
		platforms = append(platforms, p)
		if i < 2 {
			v, err := p.Verifier()
			if err != nil {
				t.Fatal(err)
			}
			any = append(any, v)
		}
	}
	for i, p := range platforms {
		quote, err := sim.Attester{Platform: p}.Attest(attest.ReportData{})
		if err != nil {
			t.Fatal(err)
		}
		claims, err := any.Verify(context.Background(), quote, now)
		switch {
		case i < 2 && err != nil:
			t.Errorf("platform %d: %v", i, err)
		case i < 2 && claims.TCBStatus != []string{"UpToDate", "OutOfDate"}[i]:
			t.Errorf("platform %d: verified by the wrong verifier (status %s)", i, claims.TCBStatus)
		case i == 2 && !errors.Is(err, attest.ErrUntrustedRoot):
			t.Errorf("untrusted platform: %v", err)
		}
	}
	if any.Kind() != attest.SGX {
		t.Errorf("kind %s", any.Kind())
	}
}

// reportDataOf is an attester whose evidence is the report data it is asked to bind.
type reportDataOf struct{}

func (reportDataOf) Kind() attest.Kind { return attest.TDX }
func (reportDataOf) Attest(rd attest.ReportData) ([]byte, error) {
	return rd[:], nil
}

// TestForWorkload checks that the workload measurement fills the last 32 bytes of the report
// data, whatever the caller put there, and leaves the first 32 (the key binding) as they were.
func TestForWorkload(t *testing.T) {
	m := [32]byte{1, 2, 3}
	a := attest.ForWorkload(reportDataOf{}, m)
	rd := attest.ReportData{9, 9}
	rd[40] = 7
	got, err := a.Attest(rd)
	if err != nil {
		t.Fatal(err)
	}
	if a.Kind() != attest.TDX || got[0] != 9 || got[1] != 9 || !bytes.Equal(got[32:], m[:]) {
		t.Errorf("kind %s, report data %x", a.Kind(), got)
	}
	if w := attest.Workload(got); !bytes.Equal(w, m[:]) {
		t.Errorf("Workload = %x", w)
	}
	if w := attest.Workload(make([]byte, 64)); w != nil {
		t.Errorf("Workload of zero bytes = %x, want nil", w)
	}
	if w := attest.Workload(got[:63]); w != nil {
		t.Errorf("Workload of 63 bytes = %x, want nil", w)
	}
}

// gpusOf is an attester of report data with GPUs, whose evidence is the nonce.
type gpusOf struct{ reportDataOf }

func (gpusOf) AttestGPUs(nonce [32]byte) ([]attest.GPUEvidence, error) {
	return []attest.GPUEvidence{{Evidence: nonce[:]}}, nil
}

// logOf is an attester of report data that keeps an event log.
type logOf struct{ reportDataOf }

func (l logOf) AttestWithLog(rd attest.ReportData) ([]byte, []byte, error) {
	ev, err := l.Attest(rd)
	return ev, []byte("log\n"), err
}

// ForWorkload keeps what the attester offers besides attesting: its GPUs (ppml run attests them
// beside the CPU) and its event log, with the workload in the report data.
func TestForWorkloadKeepsGPUsAndLog(t *testing.T) {
	m := [32]byte{1, 2, 3}
	a := attest.ForWorkload(attest.WithGPUs{Attester: logOf{}, GPUs: gpusOf{}}, m)
	g, ok := a.(attest.GPUAttester)
	if !ok {
		t.Fatalf("%T lost the GPUs", a)
	}
	if gpus, err := g.AttestGPUs([32]byte{5}); err != nil || len(gpus) != 1 || gpus[0].Evidence[0] != 5 {
		t.Errorf("GPUs: %v, %v", gpus, err)
	}
	ev, log, err := attest.AttestWithLog(a, attest.ReportData{9})
	if err != nil || string(log) != "log\n" || ev[0] != 9 || !bytes.Equal(ev[32:], m[:]) {
		t.Errorf("evidence %x, log %q, %v", ev, log, err)
	}
	// Without a log, AttestWithLog attests all the same, with no log.
	ev, log, err = attest.AttestWithLog(attest.ForWorkload(reportDataOf{}, m), attest.ReportData{9})
	if err != nil || log != nil || !bytes.Equal(ev[32:], m[:]) {
		t.Errorf("without a log: %x, %q, %v", ev, log, err)
	}
	if _, ok := attest.ForWorkload(reportDataOf{}, m).(attest.GPUAttester); ok {
		t.Error("an attester without GPUs gained some")
	}
}
