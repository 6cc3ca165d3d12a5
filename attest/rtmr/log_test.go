package rtmr

import (
	"bytes"
	"crypto/sha512"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/ppml/ppml/attest"
)

// register is an RTMR held in memory, extended as the TDX module extends one; quote reports it.
type register struct {
	mu   sync.Mutex
	r    [48]byte
	fail error
}

func (g *register) extend(d [48]byte) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.fail != nil {
		return g.fail
	}
	g.r = sha512.Sum384(append(g.r[:], d[:]...))
	return nil
}

func (g *register) Kind() attest.Kind { return attest.TDX }
func (g *register) Attest(attest.ReportData) ([]byte, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return bytes.Clone(g.r[:]), nil
}

func newAttester(t *testing.T) (Attester, *register) {
	g := &register{}
	return Attester{Attester: g, Log: Log{Path: filepath.Join(t.TempDir(), "run", "rtmr3.log"), Extend: g.extend}}, g
}

// Each extension is logged; the log read with a quote replays to the quote's RTMR3.
func TestAttesterLogsExtensions(t *testing.T) {
	a, _ := newAttester(t)
	evidence, log, err := attest.AttestWithLog(a, attest.ReportData{})
	if err != nil || len(log) != 0 || !bytes.Equal(evidence, make([]byte, 48)) {
		t.Fatalf("before any extension: %x, %q, %v", evidence, log, err)
	}
	for i := range 3 {
		if err := a.ExtendRTMR3(ManifestEvent([32]byte{byte(i)})); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := replays(a); n != 3 || err != nil {
		t.Errorf("%d events: %v", n, err)
	}
	if err := a.ExtendRTMR3(NewEvent("aael", "two\nlines")); err == nil {
		t.Error("an event of two lines was logged")
	}
}

// An extension that fails leaves the log as it was: it still replays.
func TestFailedExtensionLeavesLog(t *testing.T) {
	a, g := newAttester(t)
	if err := a.ExtendRTMR3(ManifestEvent([32]byte{1})); err != nil {
		t.Fatal(err)
	}
	g.fail = errors.New("the TDX module says no")
	if err := a.ExtendRTMR3(ManifestEvent([32]byte{2})); err == nil {
		t.Fatal("the failed extension succeeded")
	}
	if n, err := replays(a); n != 1 || err != nil {
		t.Errorf("%d events: %v", n, err)
	}
}

// replays attests with a and checks the log that comes with the evidence against it; it
// returns the number of events.
func replays(a Attester) (int, error) {
	evidence, log, err := a.AttestWithLog(attest.ReportData{})
	if err != nil {
		return 0, err
	}
	events, err := Parse(log)
	if err != nil {
		return 0, err
	}
	return len(events), Check(events, evidence)
}

// Extensions and attestations at once, as several ppml runs in one TD: every log read with a
// quote is the one that made its RTMR3.
func TestConcurrentExtensions(t *testing.T) {
	a, _ := newAttester(t)
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 20 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			errs <- a.ExtendRTMR3(ManifestEvent([32]byte{byte(i)}))
		}()
		go func() {
			defer wg.Done()
			_, err := replays(a)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

// WriteRegister writes the digest in one write of 48 bytes, as the sysfs attribute takes it.
func TestWriteRegister(t *testing.T) {
	name := filepath.Join(t.TempDir(), "rtmr3:sha384")
	if err := os.WriteFile(name, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	d := sha512.Sum384([]byte("x"))
	if err := WriteRegister(name)(d); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(name); !bytes.Equal(b, d[:]) {
		t.Errorf("wrote %x", b)
	}
	if err := WriteRegister(filepath.Join(t.TempDir(), "none"))(d); err == nil {
		t.Error("a missing register was written")
	}
}

// The extender is found through the wrappers that ppml run puts around the TD's attester, and
// its log comes through them with the workload's report data.
func TestThroughWrappers(t *testing.T) {
	a, _ := newAttester(t)
	m := [32]byte{7}
	gpus := attest.WithGPUs{Attester: a, GPUs: noGPUs{}}
	for _, w := range []attest.Attester{a, gpus, attest.ForWorkload(a, m), attest.ForWorkload(gpus, m)} {
		x, ok := ExtenderOf(w)
		if !ok {
			t.Fatalf("%T: no extender", w)
		}
		if err := x.ExtendRTMR3(ManifestEvent(m)); err != nil {
			t.Fatal(err)
		}
		_, log, err := attest.AttestWithLog(w, attest.ReportData{})
		if err != nil || len(log) == 0 {
			t.Errorf("%T: log %q, %v", w, log, err)
		}
	}
	if _, ok := ExtenderOf(noGPUs{}); ok {
		t.Error("an attester without RTMR3 extends it")
	}
}

type noGPUs struct{}

func (noGPUs) AttestGPUs([32]byte) ([]attest.GPUEvidence, error) { return nil, nil }
func (noGPUs) Kind() attest.Kind                                 { return attest.SNP }
func (noGPUs) Attest(attest.ReportData) ([]byte, error)          { return nil, nil }

// Where the kernel has no RTMR3 file, Sysfs offers nothing: ppml extends nothing and sends no
// log.
func TestSysfsAbsent(t *testing.T) {
	if _, err := os.Stat(SysfsRTMR3); err == nil {
		t.Skip("this machine is a TD whose kernel offers RTMR3")
	}
	if _, ok := Sysfs(noGPUs{}); ok {
		t.Error("Sysfs offers RTMR3 where the kernel has none")
	}
}
