//go:build amd64

package sandbox

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// The workload's system-call filter is a deny list, as Docker's default profile is in spirit:
// the workload may make every system call but those that would let it leave or rebuild its
// view, reach into other processes or the kernel, or widen the kernel's surface for no need of
// an ML workload. Those fail with EPERM:
//
//   - mounts and namespaces: mount, umount2, pivot_root, chroot, unshare, setns, the new mount
//     API (open_tree, open_tree_attr, move_mount, fsopen, fsconfig, fsmount, fspick,
//     mount_setattr), and clone with any CLONE_NEW* flag;
//   - other processes: ptrace, process_vm_readv, process_vm_writev, pidfd_getfd (another
//     process's descriptors), kcmp, process_madvise;
//   - the terminal: ioctl TIOCSTI, which types input into the terminal for the shell that runs
//     after ppml, and TIOCLINUX, which can do the same on a virtual console;
//   - io_uring (io_uring_setup, io_uring_enter, io_uring_register), whose operations this filter
//     would not see;
//   - the kernel: bpf, kexec_load, kexec_file_load, init_module, finit_module, delete_module,
//     keyctl, add_key, request_key, swapon, swapoff, reboot, syslog, perf_event_open,
//     userfaultfd, acct, quotactl, quotactl_fd, lookup_dcookie, iopl, ioperm;
//   - files by handle, which bypass paths: name_to_handle_at, open_by_handle_at;
//   - personality, but for querying it (0xffffffff) and setting the default (PER_LINUX, 0).
//
// clone3 fails with ENOSYS, since a filter cannot read its flags, which it takes by pointer:
// the C library then falls back to clone. A system call of another ABI (i386's int 0x80) kills
// the process; one of x32 (numbers from 0x40000000) fails with ENOSYS, as where x32 is off.
var deniedSyscalls = []uint32{
	unix.SYS_MOUNT, unix.SYS_UMOUNT2, unix.SYS_PIVOT_ROOT, unix.SYS_CHROOT, unix.SYS_UNSHARE, unix.SYS_SETNS,
	unix.SYS_OPEN_TREE, unix.SYS_OPEN_TREE_ATTR, unix.SYS_MOVE_MOUNT, unix.SYS_FSOPEN, unix.SYS_FSCONFIG,
	unix.SYS_FSMOUNT, unix.SYS_FSPICK, unix.SYS_MOUNT_SETATTR,
	unix.SYS_PTRACE, unix.SYS_PROCESS_VM_READV, unix.SYS_PROCESS_VM_WRITEV, unix.SYS_PIDFD_GETFD, unix.SYS_KCMP,
	unix.SYS_PROCESS_MADVISE, unix.SYS_IO_URING_SETUP, unix.SYS_IO_URING_ENTER, unix.SYS_IO_URING_REGISTER,
	unix.SYS_BPF, unix.SYS_KEXEC_LOAD, unix.SYS_KEXEC_FILE_LOAD, unix.SYS_INIT_MODULE, unix.SYS_FINIT_MODULE,
	unix.SYS_DELETE_MODULE, unix.SYS_KEYCTL, unix.SYS_ADD_KEY, unix.SYS_REQUEST_KEY, unix.SYS_SWAPON,
	unix.SYS_SWAPOFF, unix.SYS_REBOOT, unix.SYS_SYSLOG, unix.SYS_PERF_EVENT_OPEN, unix.SYS_USERFAULTFD,
	unix.SYS_ACCT, unix.SYS_QUOTACTL, unix.SYS_QUOTACTL_FD, unix.SYS_LOOKUP_DCOOKIE, unix.SYS_IOPL, unix.SYS_IOPERM,
	unix.SYS_NAME_TO_HANDLE_AT, unix.SYS_OPEN_BY_HANDLE_AT,
}

// namespaceFlags are the flags of clone that make a namespace.
const namespaceFlags = unix.CLONE_NEWNS | unix.CLONE_NEWCGROUP | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC |
	unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET

// deniedIoctls are the requests of ioctl that the workload may not make.
var deniedIoctls = []uint32{unix.TIOCSTI, unix.TIOCLINUX}

// allowedPersonalities are the arguments of personality that the workload may give.
var allowedPersonalities = []uint32{0xffffffff, 0} // query, PER_LINUX

// Offsets in struct seccomp_data, which the filter reads.
const (
	offNr   = 0
	offArch = 4
	offArg0 = 16 // the low half of the first argument, on a little-endian machine
	offArg1 = 24 // the low half of the second (the kernel reads ioctl's request as 32 bits)
)

// x32Bit marks the system calls of the x32 ABI.
const x32Bit = 0x40000000

// Filter results.
const (
	retAllow  = unix.SECCOMP_RET_ALLOW
	retEPERM  = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
	retENOSYS = unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)
	retKill   = unix.SECCOMP_RET_KILL_PROCESS
)

// seccompFilter assembles the workload's system-call filter.
func seccompFilter() ([]unix.SockFilter, error) {
	var p bpf
	p.load(offArch)
	p.jump(unix.BPF_JEQ, unix.AUDIT_ARCH_X86_64, "", "kill")
	p.load(offNr)
	p.jump(unix.BPF_JGE, x32Bit, "enosys", "")
	p.jump(unix.BPF_JEQ, unix.SYS_CLONE3, "enosys", "")
	p.jump(unix.BPF_JEQ, unix.SYS_CLONE, "clone", "")
	p.jump(unix.BPF_JEQ, unix.SYS_PERSONALITY, "personality", "")
	p.jump(unix.BPF_JEQ, unix.SYS_IOCTL, "ioctl", "")
	for _, nr := range deniedSyscalls {
		p.jump(unix.BPF_JEQ, nr, "eperm", "")
	}
	p.ret(retAllow)

	p.label("clone")
	p.load(offArg0)
	p.jump(unix.BPF_JSET, namespaceFlags, "eperm", "allow")

	p.label("ioctl")
	p.load(offArg1)
	for _, req := range deniedIoctls {
		p.jump(unix.BPF_JEQ, req, "eperm", "")
	}
	p.ret(retAllow)

	p.label("personality")
	p.load(offArg0)
	for _, arg := range allowedPersonalities {
		p.jump(unix.BPF_JEQ, arg, "allow", "")
	}
	p.label("eperm")
	p.ret(retEPERM)
	p.label("allow")
	p.ret(retAllow)
	p.label("enosys")
	p.ret(retENOSYS)
	p.label("kill")
	p.ret(retKill)
	return p.assemble()
}

// bpf assembles a classic BPF program whose conditional jumps go to labels.
type bpf struct {
	code   []unix.SockFilter
	jumps  map[int][2]string // a jump's index → its labels if true and if false ("": the next)
	labels map[string]int
}

// load loads the 32-bit word at off in the seccomp_data.
func (p *bpf) load(off uint32) {
	p.code = append(p.code, unix.SockFilter{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: off})
}

// jump compares the loaded word with k (op is BPF_JEQ, BPF_JGE or BPF_JSET) and goes on at
// label ifTrue or ifFalse, "" being the next instruction.
func (p *bpf) jump(op uint16, k uint32, ifTrue, ifFalse string) {
	if p.jumps == nil {
		p.jumps = map[int][2]string{}
	}
	p.jumps[len(p.code)] = [2]string{ifTrue, ifFalse}
	p.code = append(p.code, unix.SockFilter{Code: unix.BPF_JMP | op | unix.BPF_K, K: k})
}

// ret ends the program with the result r.
func (p *bpf) ret(r uint32) {
	p.code = append(p.code, unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: r})
}

// label names the next instruction.
func (p *bpf) label(name string) {
	if p.labels == nil {
		p.labels = map[string]int{}
	}
	p.labels[name] = len(p.code)
}

// assemble resolves the jumps' labels into offsets and returns the program.
func (p *bpf) assemble() ([]unix.SockFilter, error) {
	offset := func(from int, label string) (uint8, error) {
		if label == "" {
			return 0, nil
		}
		to, ok := p.labels[label]
		switch {
		case !ok:
			return 0, fmt.Errorf("seccomp filter: no label %q", label)
		case to <= from || to-from-1 > 255:
			return 0, fmt.Errorf("seccomp filter: instruction %d cannot jump to %q at %d", from, label, to)
		}
		return uint8(to - from - 1), nil
	}
	for i, labels := range p.jumps {
		var err error
		if p.code[i].Jt, err = offset(i, labels[0]); err != nil {
			return nil, err
		}
		if p.code[i].Jf, err = offset(i, labels[1]); err != nil {
			return nil, err
		}
	}
	if len(p.code) > unix.BPF_MAXINSNS {
		return nil, fmt.Errorf("seccomp filter: %d instructions, more than %d", len(p.code), unix.BPF_MAXINSNS)
	}
	return p.code, nil
}
