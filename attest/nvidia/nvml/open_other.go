//go:build !(nvml && linux && (amd64 || arm64))

package nvml

// Open returns ErrNotBuilt: this ppml was built without the nvml tag.
func Open() (*GPUs, error) { return nil, ErrNotBuilt }
