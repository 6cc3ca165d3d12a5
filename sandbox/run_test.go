package sandbox_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ppml/ppml/sandbox"
)

// viewScript prints what the workload sees, one fact a line.
const viewScript = `import os, sys
print("argv", sys.argv)
print("cwd", os.getcwd())
print("env", sorted(k + "=" + v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"))
print("root", sorted(os.listdir("/")))
print("dev", sorted(os.listdir("/dev")))
for p in ["/x", "/app/x", "/tmp/x", "/usr/lib/python3.11/x"]:
    try:
        open(p, "w").write("x")
        print("write", p, "ok")
    except OSError as e:
        print("write", p, e.strerror)
for p in ["/etc/passwd", "/proc/self", "/app/secret.txt", "/proc/cpuinfo", "/sys/devices/system/cpu/online", "/sys/kernel"]:
    print("exists", p, os.path.exists(p))
print(open("/dev/urandom", "rb").read(4) != b"", file=open("/dev/null", "w"))
`

// TestView checks the workload's view: exactly the declared mounts over Gramine's root (the
// folder ppml runs in, whose files allow_all_but_log serves unchecked), read-only where nothing
// is allowed, the manifest's arguments and environment without Gramine's provisioning variables.
func TestView(t *testing.T) {
	w := newWorld(t, map[string]string{"view.py": viewScript})
	os.Setenv("PPML_TEST_PASSED", "through")
	defer os.Unsetenv("PPML_TEST_PASSED")
	w.write("secret.txt", "not mounted")
	m := w.manifest(`loader.argv = ["python3", "/app/view.py", "two words"]`, `  { path = "/tmp", type = "tmpfs" },`,
		`loader.env.LD_PRELOAD = "libsecret_prov_attest.so"
loader.env.SECRET_PROVISION_CONSTRUCTOR = "1"
loader.env.PASSED = { passthrough = true }
loader.env.PPML_TEST_PASSED = { passthrough = true }
loader.env.LANG = { value = "C.UTF-8" }`, "")
	before := mounts(t)
	var out bytes.Buffer
	res, err := sandbox.Run(context.Background(), m, sandbox.Options{Stdout: &out, Stderr: &out})
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 0 {
		t.Fatalf("exit status %d:\n%s", res.ExitCode, out.String())
	}
	sameMounts(t, before)
	want := `argv ['/app/view.py', 'two words']
cwd /app
env ['LANG=C.UTF-8', 'PPML_TEST_PASSED=through']
root ['app', 'app.manifest', 'dev', 'lib', 'lib64', 'proc', 'secret.txt', 'sys', 'tmp', 'usr']
dev ['full', 'null', 'random', 'urandom', 'zero']
write /x Read-only file system
write /app/x Read-only file system
write /tmp/x ok
write /usr/lib/python3.11/x Read-only file system
exists /etc/passwd False
exists /proc/self False
exists /app/secret.txt False
exists /proc/cpuinfo True
exists /sys/devices/system/cpu/online True
exists /sys/kernel False
`
	if out.String() != want {
		t.Errorf("the workload saw\n%s\nwant\n%s", out.String(), want)
	}
}

// TestExitStatus checks that the workload's exit status, or 128+signal, comes back.
func TestExitStatus(t *testing.T) {
	w := newWorld(t, map[string]string{"exit.py": `import os, signal, sys
if sys.argv[1] == "segv":
    os.kill(os.getpid(), signal.SIGSEGV)
sys.exit(int(sys.argv[1]))
`})
	m := w.manifest(`loader.argv = ["python3", "/app/exit.py", "3"]`, "", "", "")
	before := mounts(t)
	for _, tc := range []struct {
		arg  string
		want int
	}{{"3", 3}, {"0", 0}, {"segv", 128 + int(syscall.SIGSEGV)}} {
		m.Argv[2] = tc.arg
		res, err := sandbox.Run(context.Background(), m, sandbox.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if res.ExitCode != tc.want {
			t.Errorf("exit.py %s: exit status %d, want %d", tc.arg, res.ExitCode, tc.want)
		}
	}
	sameMounts(t, before)
}

// started is a log handler that closes its channel when Run reports the workload started.
type started chan struct{}

func (s started) Enabled(context.Context, slog.Level) bool { return true }
func (s started) WithAttrs([]slog.Attr) slog.Handler       { return s }
func (s started) WithGroup(string) slog.Handler            { return s }
func (s started) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "workload started" {
		close(s)
	}
	return nil
}

// TestSignals checks that signals reach the workload.
func TestSignals(t *testing.T) {
	w := newWorld(t, map[string]string{"wait.py": `import signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(7))
print("ready", flush=True)
for _ in range(600):
    time.sleep(0.05)  # a signal just before a long sleep would wait for its end
`})
	m := w.manifest(`loader.argv = ["python3", "/app/wait.py"]`, "", "", "")
	for _, tc := range []struct {
		sig  os.Signal
		want int
	}{{syscall.SIGTERM, 7}, {syscall.SIGINT, 128 + int(syscall.SIGINT)}} {
		r, wr, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		signals := make(chan os.Signal, 1)
		ready := make(started)
		go func() {
			buf := make([]byte, 6)
			r.Read(buf) // the workload is ready for the signal
			<-ready     // and Run knows it has started: the signal is for the workload
			signals <- tc.sig
		}()
		begin := time.Now()
		res, err := sandbox.Run(context.Background(), m, sandbox.Options{Stdout: wr, Signals: signals, Log: slog.New(ready)})
		r.Close()
		wr.Close()
		if err != nil {
			t.Fatal(err)
		}
		if res.ExitCode != tc.want || time.Since(begin) > 20*time.Second {
			t.Errorf("%v: exit status %d after %v, want %d at once", tc.sig, res.ExitCode, time.Since(begin), tc.want)
		}
	}
}

// TestArguments checks the command line's arguments: refused unless the manifest allows them.
func TestArguments(t *testing.T) {
	w := newWorld(t, nil)
	m := w.manifest(`loader.argv = ["python3", "-c", "print(1)"]`, "", "", "")
	_, err := sandbox.Run(context.Background(), m, sandbox.Options{Args: []string{"x"}})
	if err == nil || !strings.Contains(err.Error(), "loader.insecure__use_cmdline_argv") {
		t.Errorf("arguments to a manifest with loader.argv: %v", err)
	}
	m = w.manifest(`loader.insecure__use_cmdline_argv = true`, "", "", "")
	var out bytes.Buffer
	res, err := sandbox.Run(context.Background(), m, sandbox.Options{Args: []string{"-c", "import sys; print(sys.argv)", "a b"}, Stdout: &out})
	if err != nil || res.ExitCode != 0 || out.String() != "['-c', 'a b']\n" {
		t.Errorf("command-line arguments: %v, %v, %q", res, err, out.String())
	}
}

// TestMountPoints checks that mount points are never reached through symbolic links.
func TestMountPoints(t *testing.T) {
	w := newWorld(t, nil)
	os.Symlink("/usr", "app/usr")
	m := w.manifest(`loader.argv = ["python3", "-c", "pass"]`, `{ path = "/app/usr/x", type = "tmpfs" }`, "", "")
	before := mounts(t)
	_, err := sandbox.Run(context.Background(), m, sandbox.Options{})
	if want := "mount /app/usr/x: the mount point's path holds a symbolic link: /app/usr"; err == nil || err.Error() != want {
		t.Errorf("%v, want %q", err, want)
	}
	sameMounts(t, before)
}
