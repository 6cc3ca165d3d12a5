//go:build !amd64

package sandbox

import (
	"errors"

	"golang.org/x/sys/unix"
)

// seccompFilter would assemble the workload's system-call filter, which is written for x86-64
// only (see seccomp.go).
func seccompFilter() ([]unix.SockFilter, error) {
	return nil, errors.New("ppml's system-call filter for the workload is written for x86-64 only")
}
