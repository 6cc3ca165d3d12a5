package sandbox_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/ppml/ppml/manifest"
	"github.com/ppml/ppml/sandbox"
)

// The tests of this file attack the trusted files as a host would: it changes them once ppml
// has started, or drops files of its own beside them.

// runLater is the workload of TestChangedScript: it says when it is ready, waits for a line on
// its standard input, then runs /app/work.py by executing it and by importing it. With "read",
// it reads work.py before it is ready.
const runLater = `import subprocess, sys
if sys.argv[1] == "read":
    open("/app/work.py").read()
print("ready", flush=True)
sys.stdin.readline()
r = subprocess.run(["/usr/bin/python3", "/app/work.py"], capture_output=True, text=True)
print("exec", r.returncode, r.stdout.strip(), r.stderr.strip()[-80:], flush=True)
try:
    import work
except Exception as e:
    print("import", type(e).__name__, e)
`

// The trusted script, and what the host puts in its place: of the same size, so that only the
// bytes differ.
const (
	original = `print("ORIGINAL")` + "\n"
	swapped  = `print("SWAPPED!")` + "\n"
)

// onReady is the workload's standard output: when the workload says it is ready, it calls
// ready, once.
type onReady struct {
	mu    sync.Mutex
	out   bytes.Buffer
	ready func()
}

func (o *onReady) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.out.Write(p)
	if o.ready != nil && strings.Contains(o.out.String(), "ready\n") {
		o.ready()
		o.ready = nil
	}
	return len(p), nil
}

func (o *onReady) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.out.String()
}

// TestChangedScript: a host that changes a trusted script, before ppml starts or once the
// workload runs, in place or by a rename, before or after the workload first read it, never
// gets its bytes run: the workload is refused the file (EACCES, with a log line naming it),
// or reads the bytes that were checked.
func TestChangedScript(t *testing.T) {
	for _, tc := range []struct {
		name   string
		before bool // changed before ppml starts
		read   bool // the workload reads work.py before the change
		rename bool // the change is a rename over work.py
	}{
		{name: "before the start", before: true},
		{name: "in place"},
		{name: "by a rename", rename: true},
		{name: "in place, after a read", read: true},
		{name: "by a rename, after a read", read: true, rename: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, map[string]string{"main.py": runLater, "work.py": original})
			arg := map[bool]string{true: "read", false: "first"}[tc.read]
			m := w.manifest(`loader.argv = ["python3", "/app/main.py", "`+arg+`"]`, "", "", "")
			change := func() {
				if tc.rename {
					w.write("app/work.py.new", swapped)
					if err := os.Rename("app/work.py.new", "app/work.py"); err != nil {
						t.Error(err)
					}
					return
				}
				f, err := os.OpenFile("app/work.py", os.O_WRONLY, 0)
				if err != nil {
					t.Error(err)
					return
				}
				f.WriteAt([]byte(swapped), 0)
				f.Close()
			}
			stdin, stdinW, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer stdin.Close()
			defer stdinW.Close()
			out := &onReady{ready: func() {
				if !tc.before {
					change()
				}
				stdinW.Write([]byte("go\n"))
			}}
			if tc.before {
				change()
			}
			res, err := sandbox.Run(context.Background(), m, sandbox.Options{Stdin: stdin, Stdout: out, Stderr: out})
			if err != nil {
				t.Fatal(err)
			}
			got := out.String()
			if strings.Contains(got, "SWAPPED") || res.ExitCode != 0 {
				t.Errorf("exit status %d: the host's script ran, or the workload failed:\n%s", res.ExitCode, got)
			}
			if tc.read {
				// Read before the change, the script is served as it was checked.
				if !strings.Contains(got, "exec 0 ORIGINAL") {
					t.Errorf("the checked script did not run:\n%s", got)
				}
				return
			}
			for _, want := range []string{
				"exec 2  /usr/bin/python3: can't open file '/app/work.py': [Errno 13] Permission denied",
				"import PermissionError [Errno 13] Permission denied: '/app/work.py'",
				`msg="trustfs: trusted file refused: its SHA-256 is not the manifest's" file=` + w.dir + "/app/work.py sha256=",
			} {
				if !strings.Contains(got, want) {
					t.Errorf("the output lacks %q:\n%s", want, got)
				}
			}
		})
	}
}

// TestUntrustedAbsent: under the strict file-check policy, a file that the host drops into a
// mounted folder after the manifest was made is absent for the workload, even a .pth file that
// Python would run; and a mount inside a mount of trusted files gets its mount point there.
func TestUntrustedAbsent(t *testing.T) {
	w := newWorld(t, map[string]string{"absent.py": `import os, site, sys
print("site", sorted(os.listdir("/site")))
print("app", sorted(os.listdir("/app")))
site.addsitedir("/site")
import mod
for p in ["/site/evil.pth", "/site/evil.py", "/app/dropped.py", "/site/sub/evil.py"]:
    try:
        open(p).read()
        print(p, "read")
    except OSError as e:
        print(p, e.strerror)
open("/site/tmp/x", "w").write("x")
print("tmpfs ok")
`})
	w.policy = manifest.Strict
	w.write("site/mod.py", `print("trusted module")`)
	m := w.manifest(`loader.argv = ["python3", "/app/absent.py"]`, `
  { path = "/site", uri = "file:site" },
  { path = "/site/tmp", type = "tmpfs" },`, "", `"file:/usr/lib/python3.11/", "file:site/mod.py",`)
	w.write("site/evil.pth", `import sys; print("PTH RAN")`)
	w.write("site/evil.py", `print("EVIL")`)
	w.write("site/sub/evil.py", `print("EVIL")`)
	w.write("app/dropped.py", `print("EVIL")`)
	var out bytes.Buffer
	res, err := sandbox.Run(context.Background(), m, sandbox.Options{Stdout: &out, Stderr: &out})
	if err != nil {
		t.Fatal(err)
	}
	want := `site ['mod.py', 'tmp']
app ['absent.py', 'ca.crt']
trusted module
/site/evil.pth No such file or directory
/site/evil.py No such file or directory
/app/dropped.py No such file or directory
/site/sub/evil.py No such file or directory
tmpfs ok
`
	if res.ExitCode != 0 || out.String() != want {
		t.Errorf("exit status %d, the workload saw\n%s\nwant\n%s", res.ExitCode, out.String(), want)
	}
}

// changedWhileOpen is the workload of TestChangedWhileOpen: it opens /app/lib.bin, reads its
// first page and maps it, says when it is ready and, once told to go on, reads the last chunk
// (1 MiB) and has a child read it through the map made before.
const changedWhileOpen = `import mmap, os, sys
f = open("/app/lib.bin", "rb")
f.read(4096)
m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
print("first", m[0], flush=True)
print("ready", flush=True)
sys.stdin.readline()
f.seek(3 << 20)
try:
    print("read", f.read(16).hex(), flush=True)
except OSError as e:
    print("read", e.strerror, flush=True)
pid = os.fork()
if pid == 0:
    print("mapped", m[3 << 20], flush=True)
    os._exit(0)
_, status = os.waitpid(pid, 0)
print("child", os.WTERMSIG(status) if os.WIFSIGNALED(status) else "exited")
`

// TestChangedWhileOpen: a host that changes a trusted file in place while the workload has it
// open and mapped gets EIO for the workload's reads and SIGBUS for its map, never its bytes.
func TestChangedWhileOpen(t *testing.T) {
	lib := make([]byte, 4<<20)
	for i := range lib {
		lib[i] = byte(i * 7)
	}
	w := newWorld(t, map[string]string{"main.py": changedWhileOpen, "lib.bin": string(lib)})
	m := w.manifest(`loader.argv = ["python3", "/app/main.py"]`, "", "", "")
	stdin, stdinW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	defer stdinW.Close()
	out := &onReady{ready: func() {
		f, err := os.OpenFile("app/lib.bin", os.O_WRONLY, 0)
		if err != nil {
			t.Error(err)
		} else {
			f.WriteAt([]byte("EVIL-EVIL-EVIL-!"), 3<<20)
			f.Close()
		}
		stdinW.Write([]byte("go\n"))
	}}
	res, err := sandbox.Run(context.Background(), m, sandbox.Options{Stdin: stdin, Stdout: out, Stderr: out})
	if err != nil {
		t.Fatal(err)
	}
	var got strings.Builder // the workload's lines, without the sandbox's log lines
	for line := range strings.Lines(out.String()) {
		if !strings.HasPrefix(line, "time=") {
			got.WriteString(line)
		}
	}
	if want := "first 0\nready\nread Input/output error\nchild 7\n"; res.ExitCode != 0 || got.String() != want { // 7: SIGBUS
		t.Errorf("exit status %d, the workload saw\n%s\nwant\n%s", res.ExitCode, got.String(), want)
	}
	if got := out.String(); !strings.Contains(got, "msg=\"trustfs: read of a trusted file failed: it changed since it was checked\" file="+w.dir+"/app/lib.bin offset=3145728") {
		t.Errorf("the failure is not logged, naming the file:\n%s", got)
	}
}

// TestRoot checks Gramine's root, the folder ppml runs in, under strict: it holds the trusted
// files there, the mount points of fs.mounts and of what ppml provides, and nothing else of the
// folder; its files are read by relative paths, as Gramine's examples read theirs.
func TestRoot(t *testing.T) {
	w := newWorld(t, map[string]string{"root.py": `import os
print("root", sorted(os.listdir("/")))
os.chdir("/")
print(open("data.txt").read())
for p in ["/secret.txt", "/app.manifest", "/site"]:
    print(p, os.path.exists(p))
`})
	w.policy = manifest.Strict
	w.write("data.txt", "trusted, in the root")
	w.write("secret.txt", "not trusted")
	w.write("site/x.py", "not trusted")
	m := w.manifest(`loader.argv = ["python3", "/app/root.py"]`, "", "", `"file:/usr/lib/python3.11/", "file:data.txt",`)
	var out bytes.Buffer
	res, err := sandbox.Run(context.Background(), m, sandbox.Options{Stdout: &out, Stderr: &out})
	if err != nil {
		t.Fatal(err)
	}
	want := `root ['app', 'data.txt', 'dev', 'lib', 'lib64', 'proc', 'sys', 'usr']
trusted, in the root
/secret.txt False
/app.manifest False
/site False
`
	if res.ExitCode != 0 || out.String() != want {
		t.Errorf("exit status %d, the workload saw\n%s\nwant\n%s", res.ExitCode, out.String(), want)
	}
}

// TestAllowedCreated: an allowed file that is not on the host yet is absent from the view
// (ENOENT, not a start-up error), and the workload creates it, as in Gramine: in the root and
// in a plain mount alike, the file is made on the host, beneath the mount's folder, the
// workload's user's; nothing else of the mount becomes writable. The devices, under the root
// that the link's folder covers, still work.
func TestAllowedCreated(t *testing.T) {
	w := newWorld(t, map[string]string{"create.py": `import os
for p in ["/result.txt", "/app/log.txt"]:
    try:
        open(p).read()
    except OSError as e:
        print(p, e.strerror)
    with open(p, "w") as f:
        f.write("written to " + p)
    print(p, open(p).read())
for p in ["/other.txt", "/app/other.txt"]:
    try:
        open(p, "w")
        print(p, "written")
    except OSError as e:
        print(p, e.strerror)
try:
    open("/etc/ethers")
except OSError as e:
    print("/etc/ethers", e.strerror)
print("urandom", len(open("/dev/urandom", "rb").read(4)))
`})
	w.policy = manifest.Strict
	w.write("etc/.keep", "")
	m := w.manifest(`loader.argv = ["python3", "/app/create.py"]
sgx.allowed_files = ["file:result.txt", "file:app/log.txt", "file:etc/ethers", "file:none/x.txt"]`, `  { path = "/etc", uri = "file:etc" },`, "", `"file:/usr/lib/python3.11/",`)
	var out bytes.Buffer
	res, err := sandbox.Run(context.Background(), m, sandbox.Options{Stdout: &out, Stderr: &out})
	if err != nil {
		t.Fatal(err)
	}
	want := `/result.txt No such file or directory
/result.txt written to /result.txt
/app/log.txt No such file or directory
/app/log.txt written to /app/log.txt
/other.txt Read-only file system
/app/other.txt Read-only file system
/etc/ethers No such file or directory
urandom 4
`
	var got strings.Builder // the workload's lines, without the sandbox's log lines
	for line := range strings.Lines(out.String()) {
		if !strings.HasPrefix(line, "time=") {
			got.WriteString(line)
		}
	}
	if res.ExitCode != 0 || got.String() != want {
		t.Errorf("exit status %d, the workload saw\n%s\nwant\n%s", res.ExitCode, out.String(), want)
	}
	for name, want := range map[string]string{"result.txt": "written to /result.txt", "app/log.txt": "written to /app/log.txt"} {
		var st syscall.Stat_t
		b, err := os.ReadFile(name)
		if err == nil {
			err = syscall.Stat(name, &st)
		}
		if err != nil || string(b) != want || st.Uid != 65534 || st.Gid != 65534 {
			t.Errorf("host %s: %q, owner %d:%d, %v; want %q, 65534:65534", name, b, st.Uid, st.Gid, err, want)
		}
	}
	for _, name := range []string{"other.txt", "app/other.txt", "etc/ethers", "none"} { // etc/ethers: only read
		if _, err := os.Lstat(name); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("host %s: %v", name, err)
		}
	}
}

// TestCheckAhead: a run keeps, in Options.CheckAhead, the trusted files that the workload
// opened, in order, by the manifest's measurement; the next run checks what that order file
// lists ahead of the opens, even a trusted file that the host added to it and the workload
// never opens; a line that names no trusted file is ignored; and a run writes the order anew.
func TestCheckAhead(t *testing.T) {
	w := newWorld(t, map[string]string{"main.py": "import mod\n", "mod.py": "print('mod')\n", "unused.py": "print('unused')\n"})
	m := w.manifest(`loader.argv = ["python3", "/app/main.py"]`, "", "", "")
	cache := t.TempDir()
	var out bytes.Buffer
	first, err := sandbox.Run(context.Background(), m, sandbox.Options{Stdout: &out, Stderr: &out, CheckAhead: cache})
	if err != nil || first.ExitCode != 0 {
		t.Fatalf("exit status %v, %v:\n%s", first, err, out.String())
	}
	sum := manifest.Measure(m)
	order := filepath.Join(cache, hex.EncodeToString(sum[:]))
	b, err := os.ReadFile(order)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	main, mod := slices.Index(lines, w.dir+"/app/main.py"), slices.Index(lines, w.dir+"/app/mod.py")
	if len(lines) != first.Checked.Files || main < 0 || mod < main || slices.Contains(lines, w.dir+"/app/unused.py") {
		t.Fatalf("order file of %d files checked:\n%s", first.Checked.Files, b)
	}
	// The host lists a trusted file that the workload does not open, and one that is not trusted.
	w.write(order, "/etc/passwd\n"+w.dir+"/app/unused.py\n"+string(b))
	second, err := sandbox.Run(context.Background(), m, sandbox.Options{Stdout: &out, Stderr: &out, CheckAhead: cache})
	if err != nil || second.ExitCode != 0 {
		t.Fatalf("exit status %v, %v:\n%s", second, err, out.String())
	}
	if second.Checked.Files != first.Checked.Files+1 || slices.Contains(second.Checked.Opened, "etc/passwd") {
		t.Errorf("checked %d files, opened %q; want the %d of the first run and unused.py", second.Checked.Files, second.Checked.Opened, first.Checked.Files)
	}
	if again, err := os.ReadFile(order); err != nil || !bytes.Equal(again, b) {
		t.Errorf("order file after the second run (%v):\n%s\nwant\n%s", err, again, b)
	}
}
