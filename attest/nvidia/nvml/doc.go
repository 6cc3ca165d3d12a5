// Package nvml collects the attestation evidence of the NVIDIA GPUs of a confidential VM through
// NVIDIA's management library (libnvidia-ml.so.1, NVML), and sets them ready for work once the
// workload's keys were released, as NVIDIA's own tools do after attesting.
//
// For each GPU it asks NVML for the device certificate chain
// (nvmlDeviceGetConfComputeGpuCertificate: PEM, leaf first) and for an attestation report for a
// nonce (nvmlDeviceGetConfComputeGpuAttestationReport: the SPDM 1.1 GET_MEASUREMENTS request and
// the GPU's signed MEASUREMENTS response, which attest/nvidia verifies). [GPUs] is an
// [attest.GPUAttester]: with [attest.WithGPUs], RA-TLS certificates carry the GPUs' evidence
// beside the CPU's, each answering the CPU evidence's key binding.
//
// NVML is a C library, loaded at run time with github.com/ebitengine/purego, without cgo. That
// makes the binary dynamically linked (it needs the C library's loader), so it is built only
// with the build tag nvml on Linux (amd64, arm64): go build -tags nvml ./cmd/ppml. Without the
// tag, [Open] returns [ErrNotBuilt] and ppml stays one static binary. This package is the only
// one that loads C code.
//
// Untested on hardware: the structure layouts follow nvml.h and are checked against a C
// library compiled from the same declarations, not against a real driver.
package nvml
