//go:build amd64

package sandbox

import (
	"encoding/binary"
	"testing"

	"golang.org/x/sys/unix"
)

// run runs the classic BPF program p on a seccomp_data of arch, nr and the arguments args, as
// the kernel would, and returns its result.
func run(t *testing.T, p []unix.SockFilter, arch, nr uint32, args ...uint64) uint32 {
	t.Helper()
	var data [64]byte
	binary.LittleEndian.PutUint32(data[offNr:], nr)
	binary.LittleEndian.PutUint32(data[offArch:], arch)
	for i, arg := range args {
		binary.LittleEndian.PutUint64(data[offArg0+8*i:], arg)
	}
	var a uint32
	for pc := 0; pc < len(p); pc++ {
		in := p[pc]
		switch in.Code {
		case unix.BPF_LD | unix.BPF_W | unix.BPF_ABS:
			a = binary.LittleEndian.Uint32(data[in.K:])
		case unix.BPF_RET | unix.BPF_K:
			return in.K
		case unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K, unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K:
			taken := a == in.K
			switch in.Code &^ (unix.BPF_JMP | unix.BPF_K) {
			case unix.BPF_JGE:
				taken = a >= in.K
			case unix.BPF_JSET:
				taken = a&in.K != 0
			}
			if taken {
				pc += int(in.Jt)
			} else {
				pc += int(in.Jf)
			}
		default:
			t.Fatalf("instruction %d: unexpected code %#x", pc, in.Code)
		}
	}
	t.Fatal("the program ran off its end")
	return 0
}

// TestSeccompFilter checks the filter's shape (every jump lands on an instruction, every result
// is one of four) and its decisions.
func TestSeccompFilter(t *testing.T) {
	p, err := seccompFilter()
	if err != nil {
		t.Fatal(err)
	}
	// Arch and number checks, clone, personality, ioctl, the list, and the four results.
	if want := 9 + len(deniedSyscalls) + 2 + 1 + len(allowedPersonalities) + 2 + len(deniedIoctls) + 4; len(p) != want {
		t.Errorf("%d instructions, want %d", len(p), want)
	}
	for i, in := range p {
		if in.Code&0x07 == unix.BPF_JMP && (i+1+int(in.Jt) >= len(p) || i+1+int(in.Jf) >= len(p)) {
			t.Errorf("instruction %d jumps past the end", i)
		}
		if in.Code == unix.BPF_RET|unix.BPF_K && in.K != retAllow && in.K != retEPERM && in.K != retENOSYS && in.K != retKill {
			t.Errorf("instruction %d returns %#x", i, in.K)
		}
	}
	if last := p[len(p)-1]; last.Code != unix.BPF_RET|unix.BPF_K {
		t.Errorf("the last instruction is not a return: %+v", last)
	}

	const x86 = unix.AUDIT_ARCH_X86_64
	const threadFlags = unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND | unix.CLONE_THREAD |
		unix.CLONE_SYSVSEM | unix.CLONE_SETTLS | unix.CLONE_PARENT_SETTID | unix.CLONE_CHILD_CLEARTID
	for _, tc := range []struct {
		name     string
		arch, nr uint32
		arg0     uint64
		want     uint32
	}{
		{"read", x86, unix.SYS_READ, 0, retAllow},
		{"execve", x86, unix.SYS_EXECVE, 0, retAllow},
		{"openat", x86, unix.SYS_OPENAT, 0, retAllow},
		{"mmap", x86, unix.SYS_MMAP, 0, retAllow},
		{"i386 read", unix.AUDIT_ARCH_I386, 3, 0, retKill},
		{"i386 mount", unix.AUDIT_ARCH_I386, 21, 0, retKill},
		{"x32 read", x86, x32Bit | unix.SYS_READ, 0, retENOSYS},
		{"x32 mount", x86, x32Bit | unix.SYS_MOUNT, 0, retENOSYS},
		{"clone3", x86, unix.SYS_CLONE3, 0, retENOSYS},
		{"fork", x86, unix.SYS_CLONE, uint64(unix.SIGCHLD), retAllow},
		{"thread", x86, unix.SYS_CLONE, threadFlags, retAllow},
		{"clone user", x86, unix.SYS_CLONE, unix.CLONE_NEWUSER | uint64(unix.SIGCHLD), retEPERM},
		{"clone net", x86, unix.SYS_CLONE, unix.CLONE_NEWNET, retEPERM},
		{"clone pid in thread", x86, unix.SYS_CLONE, threadFlags | unix.CLONE_NEWPID, retEPERM},
		{"clone cgroup", x86, unix.SYS_CLONE, unix.CLONE_NEWCGROUP, retEPERM},
		{"personality query", x86, unix.SYS_PERSONALITY, 0xffffffff, retAllow},
		{"personality linux", x86, unix.SYS_PERSONALITY, 0, retAllow},
		{"personality no ASLR", x86, unix.SYS_PERSONALITY, 0x0040000, retEPERM}, // ADDR_NO_RANDOMIZE
		{"personality high half", x86, unix.SYS_PERSONALITY, 0x1_0004_0000, retEPERM},
		{"personality exec", x86, unix.SYS_PERSONALITY, 0x0400000, retEPERM},                     // READ_IMPLIES_EXEC
		{"personality query, high half set", x86, unix.SYS_PERSONALITY, 0x1_ffff_ffff, retAllow}, // the kernel reads an int
	} {
		if got := run(t, p, tc.arch, tc.nr, tc.arg0); got != tc.want {
			t.Errorf("%s: %#x, want %#x", tc.name, got, tc.want)
		}
	}
	for _, tc := range []struct {
		name string
		req  uint64
		want uint32
	}{
		{"TCGETS", unix.TCGETS, retAllow},
		{"TIOCGWINSZ", unix.TIOCGWINSZ, retAllow},
		{"TIOCSTI", unix.TIOCSTI, retEPERM},
		{"TIOCSTI, high half set", 0xffff_ffff_0000_0000 | unix.TIOCSTI, retEPERM}, // the kernel reads an int
		{"TIOCLINUX", unix.TIOCLINUX, retEPERM},
	} {
		if got := run(t, p, x86, unix.SYS_IOCTL, 0, tc.req); got != tc.want {
			t.Errorf("ioctl %s: %#x, want %#x", tc.name, got, tc.want)
		}
	}
	for _, nr := range deniedSyscalls {
		if got := run(t, p, x86, nr, 0); got != retEPERM {
			t.Errorf("system call %d: %#x, want EPERM", nr, got)
		}
	}
}
