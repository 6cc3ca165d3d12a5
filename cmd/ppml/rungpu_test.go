package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/ppml/ppml/attest/nvidia/nvml"
	"github.com/ppml/ppml/manifest"
)

// TestNVMLGPUs checks when ppml run attests GPUs through NVML: with ppml.gpus in a
// confidential VM only; and that this machine, without NVML (or a ppml built without it), says
// so instead of running without the GPUs' evidence.
func TestNVMLGPUs(t *testing.T) {
	with := &manifest.Manifest{GPUs: manifest.AllGPUs}
	for _, tc := range []struct {
		m           *manifest.Manifest
		tee, simDir string
	}{
		{&manifest.Manifest{}, "tdx", ""},
		{with, "sim", "sim"},
		{with, "tdx", "td"},
		{with, "", ""},
	} {
		if g, err := nvmlGPUs(tc.m, tc.tee, tc.simDir); g != nil || err != nil {
			t.Errorf("gpus %d, --tee %s, --sim-platform %q: %v, %v; want neither", tc.m.GPUs, tc.tee, tc.simDir, g, err)
		}
	}
	if g, err := nvml.Open(); err == nil {
		g.Close()
		t.Skip("NVML and GPUs in CC mode are here")
	}
	for _, tee := range []string{"tdx", "snp"} {
		_, err := nvmlGPUs(with, tee, "")
		if err == nil || !strings.HasPrefix(err.Error(), "ppml.gpus in a confidential VM: the GPUs must attest beside the CPU: ") {
			t.Fatalf("--tee %s: %v", tee, err)
		}
		if _, open := nvml.Open(); !errors.Is(err, open) && err.Error() != "ppml.gpus in a confidential VM: the GPUs must attest beside the CPU: "+open.Error() {
			t.Errorf("--tee %s: %v, want Open's error %v", tee, err, open)
		}
	}
}
