package sandbox

import (
	"fmt"
	"log/slog"
)

// ConfidentialGPUs are GPUs in confidential-computing mode, which refuse work until they are set
// ready: in a confidential VM, through NVML (attest/nvidia/nvml). As NVIDIA's own tools set them
// ready only once their evidence verified, Run does only once the provisioning server accepted
// it with the CPU's and released the keys.
type ConfidentialGPUs interface {
	SetReady() error
}

// setReady sets the GPUs, if any, ready for work. It is called only after the keys were
// released and opened the existing files of the encrypted mounts.
func setReady(g ConfidentialGPUs, log *slog.Logger) error {
	if g == nil {
		return nil
	}
	if err := g.SetReady(); err != nil {
		return fmt.Errorf("set the GPUs ready for work, once their evidence and the keys were accepted: %w", err)
	}
	log.Info("GPUs ready for work")
	return nil
}
