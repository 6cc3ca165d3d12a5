package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// workloadName is argv[0] of the workload's init, by which init recognises it.
const workloadName = "ppml-workload"

// workloadConfig is what the workload's init needs, sent by the sandbox process over a pipe.
type workloadConfig struct {
	Path     string   // the entrypoint, in the workload's view
	Args     []string // argv, argv[0] included
	Env      []string
	Dir      string // fs.start_dir
	UID, GID int
	NetNS    bool // the namespace to enter is at netnsFD
}

// startWorkload starts the workload in the view at rootDir: ppml again, as the workload's init,
// in a mount namespace and a PID namespace of its own, which makes the view its root, drops
// every privilege and starts the entrypoint as its child (see workloadInit). It returns once
// the entrypoint runs, or with the error that stopped the init before. The init and the
// workload have a process group of their own, the terminal's foreground one when tty is true;
// the init dies with the thread that starts it, and every process of the workload with the
// init. The init's exit status is the workload's (128+N when signal N killed it).
func startWorkload(cfg *stageConfig, tty bool) (*exec.Cmd, error) {
	configR, configW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer configW.Close()
	errR, errW, err := os.Pipe()
	if err != nil {
		configR.Close()
		return nil, err
	}
	defer errR.Close()
	// Not one of the sandbox's descriptors reaches the init, the FUSE devices least of all:
	// the standard streams and the two pipes go as the command says, and nothing else.
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return nil, fmt.Errorf("start the workload: mark the sandbox's descriptors close-on-exec: %w", err)
	}
	cmd := &exec.Cmd{
		Path: "/proc/self/exe", Args: []string{workloadName}, Env: []string{},
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
		ExtraFiles:  []*os.File{configR, errW}, // configFD, reportFD
		SysProcAttr: &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWPID, Setpgid: true, Pdeathsig: syscall.SIGKILL},
	}
	if cfg.NetNS {
		cmd.ExtraFiles = append(cmd.ExtraFiles, os.NewFile(netnsFD, "netns")) // netnsFD
	}
	if tty {
		cmd.SysProcAttr.Foreground, cmd.SysProcAttr.Ctty = true, 0
	}
	err = cmd.Start()
	configR.Close()
	errW.Close()
	if err != nil {
		return nil, fmt.Errorf("start the workload's init: %w", err)
	}
	sendErr := json.NewEncoder(configW).Encode(workloadConfig{
		Path: cfg.Path, Args: cfg.Args, Env: cfg.Env, Dir: cfg.Dir, UID: int(cfg.UID), GID: int(cfg.GID), NetNS: cfg.NetNS,
	})
	configW.Close()
	// The init closes its report pipe once the entrypoint runs: an empty report means it does.
	msg, _ := io.ReadAll(errR)
	if len(msg) == 0 && sendErr == nil {
		return cmd, nil
	}
	cmd.Process.Kill()
	cmd.Wait()
	if len(msg) == 0 {
		return nil, fmt.Errorf("start the workload: configure its init: %w", sendErr)
	}
	return nil, errors.New(string(msg))
}

// workloadInit is the workload's init, process 1 of the workload's PID namespace: it reads its
// configuration from configFD and, on the thread that package initialisation runs on, which
// stays locked to it, makes rootDir its root, drops its privileges and starts the entrypoint
// as its child, which inherits all of that. It then reaps the namespace's orphans until the
// workload ends, and returns the workload's status; its own exit ends every process left in
// the namespace, also one that left the workload's process group. A failure before the
// workload runs is reported on reportFD.
func workloadInit() int {
	syscall.CloseOnExec(reportFD)
	report := os.NewFile(reportFD, "report")
	// The sandbox process signals the process group, the workload included; the init, whose
	// handlers an exec would reset, lets those signals pass it by.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	pid, err := startEntrypoint(os.NewFile(configFD, "config"))
	if err != nil {
		report.WriteString(err.Error())
		return 1
	}
	report.Close()
	return reap(pid)
}

// reap waits for the children of the init, the workload's orphans among them, until pid ends,
// and returns its exit status, or 128+N when signal N killed it.
func reap(pid int) int {
	for {
		var ws syscall.WaitStatus
		child, err := syscall.Wait4(-1, &ws, 0, nil)
		switch {
		case err == syscall.EINTR:
		case err != nil:
			return 1 // no child left: cannot happen while pid lives
		case child == pid && ws.Signaled():
			return 128 + int(ws.Signal())
		case child == pid:
			return ws.ExitStatus()
		}
	}
}

// startEntrypoint starts the workload as its configuration says, and returns its process ID.
func startEntrypoint(config *os.File) (int, error) {
	var cfg workloadConfig
	err := json.NewDecoder(config).Decode(&cfg)
	config.Close()
	if err != nil {
		return 0, fmt.Errorf("start the workload: read its configuration: %w", err)
	}
	// The network namespace is the thread's, which the entrypoint, started from it, inherits.
	if cfg.NetNS {
		if err := unix.Setns(netnsFD, unix.CLONE_NEWNET); err != nil {
			return 0, fmt.Errorf("start the workload: enter its network namespace (ppml.network): %w", err)
		}
		unix.Close(netnsFD)
	}
	if err := enterRoot(rootDir); err != nil {
		return 0, fmt.Errorf("start the workload: make its view the root: %w", err)
	}
	if err := dropPrivileges(cfg.UID, cfg.GID); err != nil {
		return 0, fmt.Errorf("start the workload as user %d, group %d: %w", cfg.UID, cfg.GID, err)
	}
	// Changing the user cleared the parent-death signal: set it again, and see that the
	// sandbox process did not die meanwhile. Its parent being outside its PID namespace, the
	// init cannot tell by getppid; the report pipe tells, having no reader left.
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		return 0, fmt.Errorf("start the workload: set its parent-death signal: %w", err)
	}
	if readerGone(reportFD) {
		os.Exit(1)
	}
	if err := unix.Chdir(cfg.Dir); err != nil {
		return 0, fmt.Errorf("start the workload (fs.start_dir): chdir %s: %w", cfg.Dir, err)
	}
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return 0, fmt.Errorf("start the workload: mark its descriptors close-on-exec: %w", err)
	}
	if err := installSeccomp(); err != nil {
		return 0, fmt.Errorf("start the workload: install its system-call filter: %w", err)
	}
	// From this thread, whose bounding set, securebits, no_new_privs and filter the child
	// inherits; in the init's process group, and dying with the init.
	pid, err := syscall.ForkExec(cfg.Path, cfg.Args, &syscall.ProcAttr{
		Env: cfg.Env, Files: []uintptr{0, 1, 2}, Sys: &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL},
	})
	if err == syscall.ENOENT {
		if _, serr := os.Stat(cfg.Path); serr == nil {
			return 0, fmt.Errorf("start the workload (libos.entrypoint): exec %s: %w: the program is there, but not its dynamic loader, or the interpreter of its #! line (mount it, or a folder holding ld-linux-x86-64.so.2 at /lib, as Gramine's manifests mount its runtime)", cfg.Path, err)
		}
	}
	if err != nil {
		return 0, fmt.Errorf("start the workload (libos.entrypoint): exec %s: %w", cfg.Path, err)
	}
	return pid, nil
}

// readerGone reports whether the pipe whose write end is fd has no reader left.
func readerGone(fd int) bool {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	n, err := unix.Poll(fds, 0)
	return err == nil && n > 0 && fds[0].Revents&unix.POLLERR != 0
}

// enterRoot makes the folder root the root of the calling process's mount namespace, and
// detaches the old root with every mount under it, so that nothing of the host is left to
// reach: runc's pivot_root(".", "."), which needs no folder for the old root in a read-only new
// one.
func enterRoot(root string) error {
	oldRoot, err := unix.Open("/", unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(oldRoot)
	if err := unix.Chdir(root); err != nil {
		return err
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root to %s: %w", root, err)
	}
	// The old root is now stacked on the new one; the descriptor names it.
	if err := unix.Fchdir(oldRoot); err != nil {
		return err
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach the host's mounts: %w", err)
	}
	return unix.Chdir("/")
}

// Securebits (linux/securebits.h) that keep a process of user 0 from gaining capabilities by
// executing a program, and the process from giving them back, all locked.
const (
	secbitNoRoot                  = 1 << 0
	secbitNoRootLocked            = 1 << 1
	secbitNoSetuidFixupLocked     = 1 << 3 // the fix-up, which clears capabilities on setuid, stays on
	secbitKeepCapsLocked          = 1 << 5 // keep-caps stays off
	secbitNoCapAmbientRaise       = 1 << 6
	secbitNoCapAmbientRaiseLocked = 1 << 7

	workloadSecurebits = secbitNoRoot | secbitNoRootLocked | secbitNoSetuidFixupLocked |
		secbitKeepCapsLocked | secbitNoCapAmbientRaise | secbitNoCapAmbientRaiseLocked
)

// dropPrivileges makes the calling thread run as uid and gid, without supplementary groups,
// with no capability in any set, the bounding set and the ambient one included, with
// securebits that keep user 0 from regaining them on exec, and with no_new_privs set.
// Capabilities and securebits belong to the thread: the caller executes the workload from it.
func dropPrivileges(uid, gid int) error {
	// What needs CAP_SETPCAP comes first: the user change and capset take it away.
	for c := 0; ; c++ {
		err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0)
		if err == unix.EINVAL {
			break // past the last capability the kernel knows
		}
		if err != nil {
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_SET_SECUREBITS, workloadSecurebits, 0, 0, 0); err != nil {
		return fmt.Errorf("set the securebits: %w", err)
	}
	// syscall's, which change every thread of the process.
	if err := syscall.Setgroups([]int{}); err != nil {
		return fmt.Errorf("clear the supplementary groups: %w", err)
	}
	if err := syscall.Setresgid(gid, gid, gid); err != nil {
		return fmt.Errorf("set the group: %w", err)
	}
	if err := syscall.Setresuid(uid, uid, uid); err != nil {
		return fmt.Errorf("set the user: %w", err)
	}
	var none [2]unix.CapUserData
	if err := unix.Capset(&unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}, &none[0]); err != nil {
		return fmt.Errorf("clear the capabilities: %w", err)
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("clear the ambient capabilities: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("set no_new_privs: %w", err)
	}
	return nil
}

// installSeccomp installs the workload's system-call filter (seccomp.go) on the calling thread,
// which must have no_new_privs set; the programs it executes keep it.
func installSeccomp() error {
	filter, err := seccompFilter()
	if err != nil {
		return err
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(&prog)))
	if errno != 0 {
		return errno
	}
	return nil
}
