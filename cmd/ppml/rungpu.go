package main

import (
	"fmt"

	"github.com/ppml/ppml/attest/nvidia/nvml"
	"github.com/ppml/ppml/manifest"
)

// nvmlGPUs returns, for a manifest with ppml.gpus run in a confidential VM (--tee tdx or snp
// without --sim-platform), the VM's GPUs through NVML: they attest beside the CPU, and are set
// ready for work once the keys were released. Otherwise it returns nil: a simulated platform
// attests its own simulated GPUs.
func nvmlGPUs(m *manifest.Manifest, tee, simDir string) (*nvml.GPUs, error) {
	if m.GPUs == 0 || simDir != "" || (tee != "tdx" && tee != "snp") {
		return nil, nil
	}
	g, err := nvml.Open()
	if err != nil {
		return nil, fmt.Errorf("ppml.gpus in a confidential VM: the GPUs must attest beside the CPU: %w", err)
	}
	return g, nil
}
