// Package harden keeps a process's memory, where keys and plaintext live, off the disk: it is
// locked in RAM, never swapped out, and the process leaves no core dump and cannot be attached
// to by another process of the same user.
package harden

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Process hardens the calling process:
//   - PR_SET_DUMPABLE 0: no core dump, and no ptrace or /proc/PID/mem access for processes of
//     the same user without CAP_SYS_PTRACE (a compromised workload running as root without
//     capabilities, say);
//   - RLIMIT_CORE 0, for the processes it starts and in case dumpable is set again;
//   - mlockall(MCL_CURRENT|MCL_FUTURE|MCL_ONFAULT): every page, present or to come, stays in RAM
//     once touched, so that no key or plaintext reaches swap. MCL_ONFAULT keeps the Go runtime's
//     large reservations from being populated up front.
//
// Locking needs CAP_IPC_LOCK or a large enough RLIMIT_MEMLOCK; ppml run and ppml serve run as
// root. The memory lock and non-dumpability do not survive execve; RLIMIT_CORE 0 does, in the
// processes the caller starts.
func Process() error {
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("make the process non-dumpable: %w", err)
	}
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{}); err != nil {
		return fmt.Errorf("forbid core dumps: %w", err)
	}
	if err := unix.Mlockall(unix.MCL_CURRENT | unix.MCL_FUTURE | unix.MCL_ONFAULT); err != nil {
		return fmt.Errorf("lock the process's memory in RAM: %w (it needs root, CAP_IPC_LOCK or a larger RLIMIT_MEMLOCK)", err)
	}
	return nil
}
