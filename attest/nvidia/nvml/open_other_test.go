//go:build !(nvml && linux && (amd64 || arm64))

package nvml

import (
	"errors"
	"testing"
)

// TestNotBuilt checks that a ppml built without the nvml tag says how to build one with it.
func TestNotBuilt(t *testing.T) {
	if _, err := Open(); !errors.Is(err, ErrNotBuilt) {
		t.Errorf("Open: %v, want ErrNotBuilt", err)
	}
}
