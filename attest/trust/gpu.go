package trust

import (
	"errors"

	"github.com/ppml/ppml/attest/nvidia"
	simgpu "github.com/ppml/ppml/attest/sim/gpu"
)

// GPUAnchors returns the roots of trust of GPU evidence the settings trust: NVIDIA's, always,
// and those of the simulated GPUs of each simulated platform that has some.
func (s *Settings) GPUAnchors() ([]nvidia.Anchor, error) {
	anchors := []nvidia.Anchor{nvidia.NVIDIAAnchor()}
	for _, dir := range s.SimPlatforms {
		g, err := simgpu.Load(dir)
		if errors.Is(err, simgpu.ErrNoGPUs) {
			continue
		}
		if err != nil {
			return nil, err
		}
		anchors = append(anchors, g.Anchor())
	}
	return anchors, nil
}
