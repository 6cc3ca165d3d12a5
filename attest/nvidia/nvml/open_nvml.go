//go:build nvml && linux && (amd64 || arm64)

package nvml

import (
	"fmt"

	"github.com/ebitengine/purego"
)

// library is NVML's shared library, which the NVIDIA driver installs.
const library = "libnvidia-ml.so.1"

// Open loads NVML (libnvidia-ml.so.1), initialises it and finds the GPUs, which must be in
// confidential-computing mode.
func Open() (*GPUs, error) { return openLibrary(library) }

// openLibrary is Open with the library of the given name or path.
func openLibrary(name string) (*GPUs, error) {
	h, err := purego.Dlopen(name, purego.RTLD_NOW|purego.RTLD_LOCAL)
	if err != nil {
		return nil, fmt.Errorf("load %s, NVIDIA's management library: %w (install the NVIDIA driver, R535 or later, in this VM)", name, err)
	}
	a := &api{}
	for _, f := range []struct {
		name string
		fn   any
	}{
		{"nvmlInit_v2", &a.init},
		{"nvmlShutdown", &a.shutdown},
		{"nvmlErrorString", &a.errorString},
		{"nvmlDeviceGetCount_v2", &a.deviceCount},
		{"nvmlDeviceGetHandleByIndex_v2", &a.deviceHandle},
		{"nvmlSystemGetConfComputeState", &a.ccState},
		{"nvmlDeviceGetConfComputeGpuCertificate", &a.certificate},
		{"nvmlDeviceGetConfComputeGpuAttestationReport", &a.attestationReport},
		{"nvmlSystemSetConfComputeGpusReadyState", &a.setReady},
	} {
		sym, err := purego.Dlsym(h, f.name)
		if err != nil {
			purego.Dlclose(h)
			return nil, fmt.Errorf("%s has no %s: the NVIDIA driver is too old for confidential computing (R535 or later)", name, f.name)
		}
		purego.RegisterFunc(f.fn, sym)
	}
	return open(a)
}
