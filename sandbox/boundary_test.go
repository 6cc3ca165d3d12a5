package sandbox_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ppml/ppml/manifest"
	"github.com/ppml/ppml/sandbox"
)

// The tests of this file attack the sandbox as a workload would: each runs Python code that
// tries to leave its view, regain privileges or use what ppml left open.

// users are the manifest lines of the users the attacks run as: the default, and root (with
// no capability), the stronger attacker.
var users = []string{"", "loader.uid = 0\nloader.gid = 0"}

// hostDir returns a new folder on the host that any user may read, removed at the test's end.
func hostDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ppml-host-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// run runs the python script /app/NAME of the world with args, with the manifest lines extra
// (loader or sgx keys) and the mounts given, and returns its output; the workload must exit 0.
func (w *world) run(name string, args []string, extra, mounts string) string {
	w.t.Helper()
	var quoted []string
	for _, a := range append([]string{"python3", "/app/" + name}, args...) {
		quoted = append(quoted, strconv.Quote(a))
	}
	m := w.manifest("loader.argv = ["+strings.Join(quoted, ", ")+"]\n"+extra, mounts, "", "")
	var out bytes.Buffer
	res, err := sandbox.Run(context.Background(), m, sandbox.Options{Stdout: &out, Stderr: &out})
	if err != nil {
		w.t.Fatalf("Run: %v\n%s", err, out.String())
	}
	if res.ExitCode != 0 {
		w.t.Fatalf("exit status %d:\n%s", res.ExitCode, out.String())
	}
	return out.String()
}

// escapeScript tries the classic escape from a chroot: a second chroot below the current
// folder, then up from a descriptor of the old root. Then it reads the marker at its host path,
// and where the sandbox process kept a copy of the host's tree, and writes beside it.
const escapeScript = `import os, sys
try:
    fd = os.open("/", os.O_RDONLY)
    os.chroot("/tmp")
    os.fchdir(fd)
    for _ in range(64):
        os.chdir("..")
    os.chroot(".")
    print("escaped")
except OSError as e:
    print("chroot", e.strerror)
for p in sys.argv[1:]:
    try:
        print("read", p, open(p).read())
    except OSError as e:
        print("read", p, e.strerror)
    try:
        open(p + ".escaped", "w").write("x")
        print("wrote beside", p)
    except OSError as e:
        print("write", p, e.strerror)
`

// TestChrootEscape checks that the workload cannot climb out of its root to the host's files.
func TestChrootEscape(t *testing.T) {
	w := newWorld(t, map[string]string{"escape.py": escapeScript})
	marker := filepath.Join(hostDir(t), "marker")
	canary := newCanary()
	if err := os.WriteFile(marker, []byte(canary), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, user := range users {
		out := w.run("escape.py", []string{marker, "/tmp/host" + marker}, user, `  { path = "/tmp", type = "tmpfs" },`)
		if strings.Contains(out, canary) || strings.Contains(out, "escaped") || strings.Contains(out, "wrote beside") {
			t.Errorf("%q: the workload escaped its root:\n%s", user, out)
		}
		if _, err := os.Stat(marker + ".escaped"); err == nil {
			t.Errorf("%q: the workload wrote beside the marker on the host", user)
		}
	}
}

// remountScript remounts read-only mounts of the view read-write, and writes there.
const remountScript = `import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
MS_REMOUNT, MS_BIND = 32, 4096
for target in ["/app", "/"]:
    r = libc.mount(None, target.encode(), None, MS_REMOUNT | MS_BIND, None)
    print("remount", target, "ok" if r == 0 else os.strerror(ctypes.get_errno()))
for p in ["/app/x", "/x"]:
    try:
        open(p, "w").write("x")
        print("write", p, "ok")
    except OSError as e:
        print("write", p, e.strerror)
`

// TestRemount checks that the workload cannot make its read-only mounts writable, even as root.
func TestRemount(t *testing.T) {
	w := newWorld(t, map[string]string{"remount.py": remountScript})
	want := `remount /app Operation not permitted
remount / Operation not permitted
write /app/x Read-only file system
write /x Read-only file system
`
	for _, user := range users {
		if out := w.run("remount.py", nil, user, ""); out != want {
			t.Errorf("%q: the workload saw\n%s\nwant\n%s", user, out, want)
		}
		if _, err := os.Stat("app/x"); err == nil {
			t.Errorf("%q: the workload wrote app/x on the host", user)
		}
	}
}

// privilegesScript prints the privileges of the workload and, with "child", those of a program
// it executes; then what the system-call filter lets it do.
const privilegesScript = `import ctypes, os, subprocess, sys
def status():
    fields = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines())
    return " ".join(k + "=" + fields[k].strip() for k in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp"])
print(sys.argv[1], status(), flush=True)
if sys.argv[1] == "child":
    sys.exit()
subprocess.run(["/usr/bin/python3", sys.argv[0], "child"], check=True)
libc = ctypes.CDLL(None, use_errno=True)
def call(name, *args):
    r = getattr(libc, name)(*args)
    arg = args[0] if isinstance(args[0], bytes) else hex(args[0])
    print(name, arg, "ok" if r >= 0 else os.strerror(ctypes.get_errno()), flush=True)
    return r
CLONE_NEWUSER, CLONE_NEWNS, SIGCHLD = 0x10000000, 0x20000, 17
call("unshare", CLONE_NEWUSER)
for flags in [CLONE_NEWUSER | SIGCHLD, CLONE_NEWNS | SIGCHLD, SIGCHLD]:
    pid = libc.syscall(56, flags, 0, 0, 0, 0)
    if pid == 0:
        os._exit(0)
    print("clone", hex(flags), "ok" if pid > 0 else os.strerror(ctypes.get_errno()), flush=True)
    if pid > 0:
        os.waitpid(pid, 0)
libc.personality.argtypes = [ctypes.c_ulong]
call("personality", 0xffffffff)
call("personality", 0)
call("personality", 0x0040000)
call("chroot", b"/tmp")
`

// TestPrivileges checks that the workload, and what it executes, has no capability, even as
// root, cannot gain privileges, and runs under the system-call filter.
func TestPrivileges(t *testing.T) {
	w := newWorld(t, map[string]string{"privileges.py": privilegesScript})
	const none = "CapInh=0000000000000000 CapPrm=0000000000000000 CapEff=0000000000000000 CapBnd=0000000000000000 CapAmb=0000000000000000 NoNewPrivs=1 Seccomp=2"
	want := "parent " + none + "\nchild " + none + `
unshare 0x10000000 Operation not permitted
clone 0x10000011 Operation not permitted
clone 0x20011 Operation not permitted
clone 0x11 ok
personality 0xffffffff ok
personality 0x0 ok
personality 0x40000 Operation not permitted
chroot b'/tmp' Operation not permitted
`
	for _, user := range users {
		out := w.run("privileges.py", []string{"parent"}, user, `  { path = "/proc", uri = "file:/proc" },
  { path = "/tmp", type = "tmpfs" },`)
		if out != want {
			t.Errorf("%q: the workload saw\n%s\nwant\n%s", user, out, want)
		}
	}
}

// fdsScript lists the descriptors open in the workload but the standard ones, and reads the
// marker through the descriptor argv[1].
const fdsScript = `import os, sys
def is_open(fd):
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False
print("open", [fd for fd in range(3, 1024) if is_open(fd)])
try:
    print(open("marker", opener=lambda p, f: os.open(p, f, dir_fd=int(sys.argv[1]))).read())
except OSError as e:
    print("marker", e.strerror)
`

// TestDescriptors checks that no descriptor but the standard streams reaches the workload: not
// one that ppml inherited, nor one of the sandbox process's, such as the FUSE devices of its
// encrypted mounts.
func TestDescriptors(t *testing.T) {
	w := newWorkWorld(t, newCanary())
	w.write("app/fds.py", fdsScript)
	dir := hostDir(t)
	canary := newCanary()
	if err := os.WriteFile(filepath.Join(dir, "marker"), []byte(canary), 0o644); err != nil {
		t.Fatal(err)
	}
	// As (exec 7<DIR; ppml run ...) would leave it, not close-on-exec; at 7 unless the test
	// process uses 7.
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := unix.FcntlInt(7, unix.F_GETFD, 0); err != nil && fd != 7 {
		if err := unix.Dup2(fd, 7); err != nil {
			t.Fatal(err)
		}
		unix.Close(fd)
		fd = 7
	}
	defer unix.Close(fd)
	var ms []*manifest.Manifest
	policy := ""
	for i, user := range users {
		m := w.manifest(fmt.Sprintf(`loader.argv = ["python3", "/app/fds.py", "%d"]`, fd)+"\n"+user, workMounts, provisioning(w.addr), "")
		ms = append(ms, m)
		policy += fmt.Sprintf(`[[workload]]
name = "user %d"
tee = "sgx"
mrenclave = ["%x"]
keys = ["default", "model"]
allow_simulated = true
`, i, manifest.Measure(m))
	}
	w.servePolicy(policy, nil)
	for i, m := range ms {
		var out bytes.Buffer
		res, err := sandbox.Run(context.Background(), m, w.options(m, &out))
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("%q: %v, %v\n%s", users[i], res, err, out.String())
		}
		if want := "open []\nmarker Bad file descriptor\n"; out.String() != want {
			t.Errorf("%q: the workload saw\n%s\nwant\n%s", users[i], out.String(), want)
		}
	}
}

// TestUser checks the workload's user and groups: nobody by default, loader.uid and loader.gid
// when set; and that a writable chroot mount is written with the host's permissions for it.
func TestUser(t *testing.T) {
	w := newWorld(t, map[string]string{"user.py": `import os
print(os.getresuid(), os.getresgid(), os.getgroups())
try:
    open("/out/file", "w").write("x")
    print("write ok")
except OSError as e:
    print("write", e.strerror)
`})
	if err := os.Mkdir("out", 0o755); err != nil {
		t.Fatal(err)
	}
	const allowed = "\nsgx.allowed_files = [\"file:out/\"]"
	mount := `  { path = "/out", uri = "file:out" },`
	for _, tc := range []struct{ user, want string }{
		{"", "(65534, 65534, 65534) (65534, 65534, 65534) []\nwrite Permission denied\n"},
		{"loader.uid = 1234\nloader.gid = 5678", "(1234, 1234, 1234) (5678, 5678, 5678) []\nwrite Permission denied\n"},
		{"loader.uid = 0\nloader.gid = 0", "(0, 0, 0) (0, 0, 0) []\nwrite ok\n"},
	} {
		os.Remove("out/file")
		if out := w.run("user.py", nil, tc.user+allowed, mount); out != tc.want {
			t.Errorf("%q: the workload saw\n%s\nwant\n%s", tc.user, out, tc.want)
		}
	}
	os.Remove("out/file")
	if err := os.Chown("out", 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if out := w.run("user.py", nil, allowed, mount); !strings.HasSuffix(out, "write ok\n") {
		t.Errorf("nobody in a folder of its own: %s", out)
	}
}

// TestMountFlags checks that the view holds the declared mounts, the root (the folder ppml runs
// in) included, and nothing else of the host's tree, and that every mount is nosuid and nodev but the device files', which must work.
func TestMountFlags(t *testing.T) {
	w := newWorld(t, map[string]string{"mounts.py": `for line in open("/proc/self/mountinfo"):
    fields = line.split()
    print(fields[4], fields[5])
`})
	out := w.run("mounts.py", nil, "", `  { path = "/proc", uri = "file:/proc" },
  { path = "/tmp", type = "tmpfs" },`)
	var points []string
	for line := range strings.Lines(out) {
		point, opts, _ := strings.Cut(strings.TrimSpace(line), " ")
		points = append(points, point)
		flags := strings.Split(opts, ",")
		isDev := strings.HasPrefix(point, "/dev/")
		if !slices.Contains(flags, "nosuid") || slices.Contains(flags, "nodev") == isDev {
			t.Errorf("%s is mounted %s", point, opts)
		}
	}
	declared := []string{"/", "/usr/bin/python3", "/lib64", "/lib/x86_64-linux-gnu", "/usr/lib/python3.11", "/app", "/proc", "/tmp", "/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom",
		"/proc/cpuinfo", "/sys/devices/system/cpu", "/sys/devices/system/node"} // and the CPU's description, as Gramine emulates it
	for _, want := range declared {
		if !slices.Contains(points, want) {
			t.Errorf("%s is not mounted", want)
		}
	}
	// The names of the root, the folder ppml runs in, are bound in the tmpfs that holds the
	// root's mount points (stage.go, shadow).
	names, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		declared = append(declared, "/"+n.Name())
	}
	for _, p := range points {
		// A recursive bind brings the mounts under its host path along (/proc has some).
		if !slices.ContainsFunc(declared, func(d string) bool { return p == d || d != "/" && strings.HasPrefix(p, d+"/") }) {
			t.Errorf("the view holds a mount at %s", p)
		}
	}
}

// TestStartErrors checks that what stops the workload's start before its entrypoint runs comes
// back from Run, saying what failed.
func TestStartErrors(t *testing.T) {
	w := newWorld(t, nil)
	for _, tc := range []struct{ lines, want string }{
		{`libos.entrypoint = "/usr/bin/none"`, "start the workload (libos.entrypoint): exec /usr/bin/none: no such file or directory"},
		{`fs.start_dir = "/none"`, "start the workload (fs.start_dir): chdir /none: no such file or directory"},
		{`libos.entrypoint = "/app"`, "start the workload (libos.entrypoint): exec /app: permission denied"},
	} {
		m := w.manifest(`loader.argv = ["python3", "-c", "print(1)"]`, "", "", "")
		text := string(m.Canonical())
		key, _, _ := strings.Cut(tc.lines, " = ")
		text = regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(key)+` = .*$`).ReplaceAllString(text, tc.lines)
		m, err := manifest.Parse([]byte(text))
		if err != nil {
			t.Fatal(err)
		}
		before := mounts(t)
		var out bytes.Buffer
		res, err := sandbox.Run(context.Background(), m, sandbox.Options{Stdout: &out, Stderr: &out})
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s: %v, %v; want the error %q", tc.lines, res, err, tc.want)
		}
		if out.Len() > 0 {
			t.Errorf("%s: the workload wrote %q", tc.lines, out.String())
		}
		sameMounts(t, before)
	}
}

// TestAllowedFilesOnly checks that an sgx.allowed_files entry inside a plain mount lets the
// workload write that file, and nothing else of the mount: not a sibling, not a trusted file,
// not a new file, also as root (without capabilities).
func TestAllowedFilesOnly(t *testing.T) {
	w := newWorld(t, map[string]string{"write.py": `import sys
for p in sys.argv[1:]:
    try:
        open(p, "a").write("x")
        print(p, "written")
    except OSError as e:
        print(p, e.strerror)
`})
	for _, name := range []string{"log.txt", "other.txt"} {
		w.write("app/"+name, "")
	}
	args := []string{"/app/log.txt", "/app/other.txt", "/app/write.py", "/app/new.txt"}
	for _, user := range users {
		if err := os.Chmod("app/log.txt", 0o666); err != nil {
			t.Fatal(err)
		}
		out := w.run("write.py", args, user+"\nsgx.allowed_files = [\"file:app/log.txt\"]", "")
		if !strings.HasPrefix(out, "/app/log.txt written\n") || strings.Count(out, "written") != 1 {
			t.Errorf("%q: the workload saw\n%s\nwant /app/log.txt written, and nothing else", user, out)
		}
		if user != "" && strings.Count(out, "Read-only file system") != 3 {
			t.Errorf("%q: root was not stopped by read-only mounts:\n%s", user, out)
		}
	}
	// An allowed file not on the host yet is for the workload to create: TestAllowedCreated.
}

// TestSandboxMemory checks that the sandbox process, which holds the keys and serves the
// plaintext, keeps its memory locked in RAM and cannot be dumped or read by the workload.
func TestSandboxMemory(t *testing.T) {
	// The host's /proc, mounted, names processes by their host PIDs: the workload's parent is its
	// init, whose parent is the sandbox process.
	w := newWorld(t, map[string]string{"parent.py": `import os
def status(pid):
    return dict(l.split(":", 1) for l in open("/proc/%s/status" % pid).read().splitlines())
init = status(os.readlink("/proc/self"))["PPid"].strip()
sandbox = status(init)["PPid"].strip()
print("VmLck", status(sandbox)["VmLck"].split()[0])
try:
    open("/proc/%s/mem" % sandbox, "rb").read(1)
    print("mem read")
except OSError as e:
    print("mem", e.strerror)
`})
	for _, user := range users {
		out := w.run("parent.py", nil, user, `  { path = "/proc", uri = "file:/proc" },`)
		var kb int
		var mem string
		if _, err := fmt.Sscanf(out, "VmLck %d\nmem %s", &kb, &mem); err != nil || kb == 0 || mem == "read" {
			t.Errorf("%q: the workload saw its parent as\n%s", user, out)
		}
	}
}

// TestHostRequirements: without root, or without /dev/fuse for encrypted mounts, Run says what
// it needs before it attests or starts anything. Each case runs in a child process: as nobody,
// or in a mount namespace of its own whose /dev lacks fuse.
func TestHostRequirements(t *testing.T) {
	const manifestText = `libos.entrypoint = "/bin/true"
fs.mounts = [{ path = "/data", uri = "file:data", type = "encrypted" }]
`
	if mode := os.Getenv("PPML_TEST_HOST"); mode != "" {
		if mode == "nofuse" {
			if err := syscall.Mount("tmpfs", "/dev", "tmpfs", 0, ""); err != nil {
				t.Fatal(err)
			}
		}
		m, err := manifest.Parse([]byte(manifestText))
		if err != nil {
			t.Fatal(err)
		}
		_, err = sandbox.Run(context.Background(), m, sandbox.Options{})
		fmt.Printf("Run: %v\n", err)
		return
	}
	needRoot(t)
	// The test binary where nobody may run it.
	bin := filepath.Join(hostDir(t), "sandbox.test")
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mode string
		attr *syscall.SysProcAttr
		want string
	}{
		{"nobody", &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}, "ppml run needs root: it builds the workload's view in a mount namespace of its own (run it with sudo)"},
		{"nofuse", &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS, Unshareflags: syscall.CLONE_NEWNS}, "ppml run needs /dev/fuse to serve the encrypted mounts and the plain ones (load the fuse module"},
	} {
		cmd := exec.Command(bin, "-test.run=^TestHostRequirements$")
		cmd.Dir = filepath.Dir(bin)
		cmd.Env = append(os.Environ(), "PPML_TEST_HOST="+tc.mode)
		cmd.SysProcAttr = tc.attr
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Run: "+tc.want) {
			t.Errorf("%s: %v\n%s\nwant Run: %s", tc.mode, err, out, tc.want)
		}
	}
}

// TestDeniedCalls runs system calls that the filter refuses and that a workload could otherwise
// use on other processes or the user's terminal, and checks that each fails with EPERM.
func TestDeniedCalls(t *testing.T) {
	w := newWorld(t, map[string]string{"calls.py": `import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
def call(name, nr, *args):
    r = libc.syscall(nr, *args)
    print(name, ctypes.get_errno() if r == -1 else "allowed")
pidfd = os.pidfd_open(os.getpid())
call("pidfd_getfd", 438, pidfd, 0, 0)
call("kcmp", 312, os.getpid(), os.getpid(), 0, 0, 0)
call("process_madvise", 440, pidfd, 0, 0, 0, 0)
call("io_uring_setup", 425, 1, ctypes.create_string_buffer(120))
call("ioctl TIOCSTI", 16, 0, 0x5412, ctypes.c_char_p(b"x"))
`})
	for _, user := range users {
		out := w.run("calls.py", nil, user, "")
		want := "pidfd_getfd 1\nkcmp 1\nprocess_madvise 1\nio_uring_setup 1\nioctl TIOCSTI 1\n"
		if out != want {
			t.Errorf("%q: the workload saw\n%s\nwant\n%s", user, out, want)
		}
	}
}

// TestPIDNamespace checks that the workload has a PID namespace of its own: it cannot signal
// the host's processes, not even those of its own user, and a process it puts in a session of
// its own, out of its process group, does not outlive it.
func TestPIDNamespace(t *testing.T) {
	w := newWorld(t, map[string]string{"pids.py": `import os, signal, subprocess
subprocess.Popen(["/usr/bin/python3", "-c", "import time; time.sleep(100)  # escapee"], start_new_session=True)
print("pid", os.getpid(), "parent", os.getppid())
try:
    os.kill(-1, signal.SIGTERM)  # every process it may signal, but itself and its init
except OSError as e:
    print("kill", e.strerror)
`})
	for _, user := range users {
		// A process of the host, root's, as the workload is with loader.uid = 0.
		bystander := exec.Command("/bin/sleep", "100")
		if err := bystander.Start(); err != nil {
			t.Fatal(err)
		}
		out := w.run("pids.py", nil, user, "")
		if !regexp.MustCompile(`^pid \d+ parent 1\n`).MatchString(out) {
			t.Errorf("%q: the workload saw\n%s\nwant to be the child of its init, process 1", user, out)
		}
		if err := bystander.Process.Signal(syscall.Signal(0)); err != nil {
			t.Errorf("%q: the workload killed a process of the host: %v", user, err)
		}
		bystander.Process.Kill()
		bystander.Wait()
		for i := 0; processRunning(t, "import time; time.sleep(100)  # escapee") != 0; i++ {
			if i == 100 {
				t.Fatalf("%q: a process of the workload outlived it", user)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}
