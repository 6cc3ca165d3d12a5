package trustfs

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/ppml/ppml/internal/testfiles"
)

// content returns n bytes that depend on seed.
func content(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	r.Read(b)
	return b
}

// hostFolder makes a host folder with files (name → content), readable by all.
func hostFolder(t testing.TB, files map[string][]byte) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// trustedEntry is the entry that serves the host file host at path, trusting content.
func trustedEntry(path, host string, content []byte) Entry {
	return Entry{Path: path, Kind: Trusted, Host: host, SHA256: sha256.Sum256(content)}
}

// mount serves entries of host at a new folder, and unmounts it when the test ends, checking
// that nothing stays mounted. It skips the test where FUSE cannot be used.
func mount(t testing.TB, host string, entries []Entry) (*Server, string, *testfiles.LogBuffer) {
	t.Helper()
	return mountWith(t, host, entries, Options{})
}

// mountWith is mount with options, but for the logger and AllowOther.
func mountWith(t testing.TB, host string, entries []Entry, opts Options) (*Server, string, *testfiles.LogBuffer) {
	t.Helper()
	if f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0); err != nil {
		t.Skipf("skipped: FUSE is not usable here (%v); trustfs tests need /dev/fuse", err)
	} else {
		f.Close()
	}
	logs := &testfiles.LogBuffer{}
	// Where any user may reach it, unlike t.TempDir.
	mnt, err := os.MkdirTemp("", "trustfs-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(mnt) })
	if err := os.Chmod(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	opts.Logger, opts.AllowOther = slog.New(slog.NewTextHandler(logs, nil)), true
	s, err := Mount(mnt, host, entries, opts)
	if errors.Is(err, syscall.EPERM) {
		t.Skipf("skipped: not allowed to mount FUSE filesystems here (%v)", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
		}
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			t.Errorf("the server of %s is still running 10s after unmounting", mnt)
		}
	})
	return s, mnt, logs
}

// names returns the names in the folder dir, or the error.
func names(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	var list []string
	for _, e := range entries {
		list = append(list, e.Name())
	}
	return list, err
}

// TestOnlyEntries: the filesystem serves its entries and the folders that lead to them, and
// nothing else of the host folder, not even a file dropped into a served folder; and what it
// serves keeps the host's owner and permissions, which bind whoever reads.
func TestOnlyEntries(t *testing.T) {
	a, c := []byte("print('trusted')\n"), content(1, 5000)
	host := hostFolder(t, map[string][]byte{
		"lib/a.py": a, "lib/b.py": []byte("untrusted"), "lib/sub/c.so": c, "lib/sub/d.so": []byte("untrusted"),
		"lib/site/x.pth": []byte("import evil"), "other/e": []byte("other"),
	})
	if err := os.Chmod(filepath.Join(host, "lib/sub/c.so"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, mnt, _ := mount(t, host, []Entry{
		trustedEntry("0/a.py", "lib/a.py", a),
		trustedEntry("0/sub/c.so", "lib/sub/c.so", c),
		{Path: "0/mnt", Kind: Folder},
		{Path: "1", Kind: File},
	})
	// Dropped after the mount, as after the manifest was made.
	if err := os.WriteFile(filepath.Join(host, "lib/evil.pth"), []byte("import evil"), 0o644); err != nil {
		t.Fatal(err)
	}
	for dir, want := range map[string][]string{"": {"0", "1"}, "0": {"a.py", "mnt", "sub"}, "0/sub": {"c.so"}, "0/mnt": nil} {
		if got, err := names(filepath.Join(mnt, dir)); err != nil || !slices.Equal(got, want) {
			t.Errorf("folder %q lists %q, %v; want %q", dir, got, err, want)
		}
	}
	for _, p := range []string{"0/b.py", "0/evil.pth", "0/site", "0/site/x.pth", "0/sub/d.so", "other", "0/../other/e"} {
		if _, err := os.Stat(filepath.Join(mnt, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: %v, want it absent", p, err)
		}
		if _, err := os.ReadFile(filepath.Join(mnt, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("read %s: %v, want it absent", p, err)
		}
	}
	if got, err := os.ReadFile(filepath.Join(mnt, "0/a.py")); err != nil || !bytes.Equal(got, a) {
		t.Errorf("0/a.py: %q, %v", got, err)
	}
	for p, want := range map[string]os.FileMode{"0": os.ModeDir | 0o555, "0/mnt": os.ModeDir | 0o555, "1": 0o444, "0/a.py": 0o644, "0/sub/c.so": 0o600} {
		info, err := os.Stat(filepath.Join(mnt, p))
		if err != nil || info.Mode() != want || info.Sys().(*syscall.Stat_t).Uid != 0 {
			t.Errorf("%s: %v, %v; want mode %v, owned by root", p, info.Mode(), err, want)
		}
	}
	// The host's permissions bind another user: c.so is root's alone.
	for p, want := range map[string]string{"0/a.py": string(a), "0/sub/c.so": "Permission denied"} {
		cmd := exec.Command("/bin/cat", filepath.Join(mnt, p))
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, _ := cmd.CombinedOutput()
		if !strings.Contains(string(out), want) {
			t.Errorf("cat %s as nobody: %q, want %q", p, out, want)
		}
	}
	if f, err := os.OpenFile(filepath.Join(mnt, "0/a.py"), os.O_WRONLY, 0); err == nil {
		f.Close()
		t.Error("0/a.py opened for writing")
	}
}

// TestFirstOpen: a trusted file is checked when first opened, not at the mount: one that does
// not match its hash then is refused (EACCES) and logged, naming it, and checked again at the
// next open.
func TestFirstOpen(t *testing.T) {
	good := content(2, 3*ChunkSize+100)
	host := hostFolder(t, map[string][]byte{"model.bin": good, "script.py": []byte("print(1)\n")})
	s, mnt, logs := mount(t, host, []Entry{
		trustedEntry("model.bin", "model.bin", good),
		trustedEntry("script.py", "script.py", []byte("print(1)\n")),
	})
	if st := s.Stats(); st.Files != 0 || st.Bytes != 0 || st.Opened != nil {
		t.Errorf("checked at the mount: %+v", st)
	}
	// Changed after the mount, before the first open: in place, then by a rename.
	if err := os.WriteFile(filepath.Join(host, "script.py"), []byte("print(2)\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(mnt, "script.py")); !errors.Is(err, syscall.EACCES) {
		t.Errorf("a changed script read %q, %v; want EACCES", b, err)
	}
	if !strings.Contains(logs.String(), `msg="trustfs: trusted file refused: its SHA-256 is not the manifest's" file=`+filepath.Join(host, "script.py")+" sha256=") {
		t.Errorf("the refusal is not logged with the file's name:\n%s", logs)
	}
	bad := slices.Clone(good)
	bad[2*ChunkSize+5] ^= 1
	renameOver(t, filepath.Join(host, "model.bin"), bad)
	if _, err := os.ReadFile(filepath.Join(mnt, "model.bin")); !errors.Is(err, syscall.EACCES) {
		t.Errorf("a changed model: %v; want EACCES", err)
	}
	renameOver(t, filepath.Join(host, "model.bin"), good)
	if b, err := os.ReadFile(filepath.Join(mnt, "model.bin")); err != nil || !bytes.Equal(b, good) {
		t.Errorf("the model restored: %v, equal %v", err, bytes.Equal(b, good))
	}
	if st := s.Stats(); st.Files != 1 || st.Bytes != int64(len(good)) || st.Time <= 0 || !slices.Equal(st.Opened, []string{"model.bin"}) {
		t.Errorf("stats %+v; want one file of %d bytes, opened", st, len(good))
	}
}

// TestCheckAhead: the files that Options.CheckAhead lists are checked after the mount without
// being opened, each once, and served as they were checked: a host that changes one after its
// check gets EIO for the reader. A listed file that fails its check is checked again at its
// open, a file not listed is checked at its open, and a name that no trusted entry has is left
// alone; Stats.Opened lists the files opened, in the order of their first opens.
func TestCheckAhead(t *testing.T) {
	big, small, late, bad := content(11, 5*ChunkSize+3), []byte("small\n"), []byte("late\n"), []byte("bad\n")
	host := hostFolder(t, map[string][]byte{"lib/big.so": big, "small.py": small, "late.py": late, "bad.py": []byte("EVIL\n"), "other": []byte("x")})
	s, mnt, logs := mountWith(t, host, []Entry{
		trustedEntry("big.so", "lib/big.so", big),
		trustedEntry("again.so", "lib/big.so", big),
		trustedEntry("small.py", "small.py", small),
		trustedEntry("late.py", "late.py", late),
		trustedEntry("bad.py", "bad.py", bad),
	}, Options{CheckAhead: []string{"small.py", "other", "lib/big.so", "small.py", "bad.py", "../small.py"}})
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "bad.py") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if st := s.Stats(); st.Files != 2 || st.Bytes != int64(len(big)+len(small)) || st.Opened != nil {
		t.Fatalf("checked ahead: %+v; want small.py and lib/big.so checked, nothing opened; log:\n%s", st, logs)
	}
	// Checked ahead, then changed on the host, in place: served as checked, or not at all.
	f, err := os.OpenFile(filepath.Join(host, "lib/big.so"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("EVIL"), 2*ChunkSize)
	f.Close()
	if b, err := os.ReadFile(filepath.Join(mnt, "again.so")); !errors.Is(err, syscall.EIO) {
		t.Errorf("a file changed after its check ahead: read %d bytes, %v; want EIO", len(b), err)
	}
	// Not listed: checked at its open.
	if err := os.WriteFile(filepath.Join(host, "late.py"), []byte("EVIL\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.ReadFile(filepath.Join(mnt, "late.py")); !errors.Is(err, syscall.EACCES) {
		t.Errorf("a file not listed, changed before its open: %v; want EACCES", err)
	}
	// Refused ahead, set right by the host before its open: checked again.
	if err := os.WriteFile(filepath.Join(host, "bad.py"), bad, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"bad.py", "small.py"} {
		if b, err := os.ReadFile(filepath.Join(mnt, name)); err != nil {
			t.Errorf("%s: %v", name, err)
		} else if want := map[string][]byte{"bad.py": bad, "small.py": small}[name]; !bytes.Equal(b, want) {
			t.Errorf("%s: read %q, want %q", name, b, want)
		}
	}
	if st := s.Stats(); st.Files != 3 || !slices.Equal(st.Opened, []string{"lib/big.so", "bad.py", "small.py"}) {
		t.Errorf("stats %+v; want 3 files checked, and the 3 opened that passed, in order", st)
	}
}

// renameOver replaces the host file p by a new file holding b, as a package manager does.
func renameOver(t *testing.T, p string, b []byte) {
	t.Helper()
	if err := os.WriteFile(p+".new", b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(p+".new", p); err != nil {
		t.Fatal(err)
	}
}

// readAt reads len(b) bytes of the file at p from off through a new descriptor, after asking
// the kernel to drop what it cached of the file, so that the read reaches trustfs.
func readAt(p string, b []byte, off int64) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
	_, err = f.ReadAt(b, off)
	return err
}

// TestChangedAfterCheck: a host that changes a trusted file after its check, in place or by a
// rename, while it is open or between opens, gets EIO or EACCES for the reader, never its bytes:
// every read is checked against the hashes of the first open.
func TestChangedAfterCheck(t *testing.T) {
	good := content(3, 4*ChunkSize)
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, p string)
		open   syscall.Errno // what a later open gets, 0 if it opens
		still  bool          // the file open before the change still holds the checked bytes
	}{
		{"bytes in place", func(t *testing.T, p string) {
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			f.WriteAt([]byte("EVIL"), 3*ChunkSize+10)
			f.WriteAt([]byte("EVIL"), 10)
		}, 0, false},
		{"renamed over, same size", func(t *testing.T, p string) {
			bad := slices.Clone(good)
			copy(bad[3*ChunkSize+10:], "EVIL")
			copy(bad[10:], "EVIL")
			renameOver(t, p, bad)
		}, 0, true},
		{"truncated", func(t *testing.T, p string) {
			if err := os.Truncate(p, 3*ChunkSize+20); err != nil {
				t.Fatal(err)
			}
		}, syscall.EACCES, false},
		{"grown", func(t *testing.T, p string) {
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.Write([]byte("EVIL"))
			f.Close()
		}, syscall.EACCES, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host := hostFolder(t, map[string][]byte{"lib.so": good})
			_, mnt, logs := mount(t, host, []Entry{trustedEntry("lib.so", "lib.so", good)})
			p := filepath.Join(mnt, "lib.so")
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			head := make([]byte, 4096)
			if _, err := f.ReadAt(head, 0); err != nil || !bytes.Equal(head, good[:4096]) {
				t.Fatalf("read before the change: %v", err)
			}
			tc.change(t, filepath.Join(host, "lib.so"))

			// A new open: refused, or its reads fail but for the checked bytes kept in memory
			// (chunk 0); chunk 3 was never read, so it is read from the host.
			b := make([]byte, 100)
			for off := int64(0); off < int64(len(good)); off += ChunkSize {
				err := readAt(p, b, off)
				switch {
				case tc.open != 0 && !errors.Is(err, tc.open):
					t.Errorf("read at %d: %v, want %v", off, err, tc.open)
				case err == nil && !bytes.Equal(b, good[off:off+100]):
					t.Errorf("read at %d: the host's bytes %q", off, b)
				case tc.open == 0 && off == 3*ChunkSize && !errors.Is(err, syscall.EIO):
					t.Errorf("read of the changed chunk after a new open: %v, want EIO", err)
				}
			}
			// The file open before the change: its host file may be the changed one or, after
			// a rename, the one checked.
			_, err = f.ReadAt(b, 3*ChunkSize)
			switch {
			case err == nil && !bytes.Equal(b, good[3*ChunkSize:3*ChunkSize+100]):
				t.Errorf("read through the open file: the host's bytes %q", b)
			case tc.still && err != nil:
				t.Errorf("read through the open file, whose host file is as checked: %v", err)
			case !tc.still && !errors.Is(err, syscall.EIO):
				t.Errorf("read of the changed chunk through the open file: %v; want EIO", err)
			}
			want := "changed since it was checked"
			if !strings.Contains(logs.String(), "file="+filepath.Join(host, "lib.so")) || !strings.Contains(logs.String(), want) {
				t.Errorf("the failure is not logged, naming the file:\n%s", logs)
			}
		})
	}
}

// mmapHelperEnv names the file that TestMmapHelper maps, when the test binary runs as a helper.
const mmapHelperEnv = "TRUSTFS_TEST_MMAP_FILE"

// TestMmapHelper is not a test: TestMmap runs the test binary with it to map a file in another
// process (a page fault on a FUSE file blocks its thread where the Go runtime cannot see it,
// which can deadlock a process that also serves the filesystem). It maps the file, shared and
// read-only as the dynamic loader maps a library's text, prints the SHA-256 of its first
// chunk, and then, for each offset it reads on its standard input, the byte there or "fault".
func TestMmapHelper(t *testing.T) {
	p := os.Getenv(mmapHelperEnv)
	if p == "" {
		t.Skip("helper process for TestMmap")
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	info, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	b, err := syscall.Mmap(int(f.Fd()), 0, int(info.Size()), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("sha256=%x\n", sha256.Sum256(b[:ChunkSize]))
	debug.SetPanicOnFault(true) // a page that cannot be read is SIGBUS
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		var off int
		fmt.Sscan(in.Text(), &off)
		fmt.Println(touch(b, off))
	}
}

// touch returns the byte of b at off, or "fault" if reading it faults.
func touch(b []byte, off int) (s string) {
	defer func() {
		if recover() != nil {
			s = "fault"
		}
	}()
	return fmt.Sprint(b[off])
}

// TestMmap: a trusted file maps and reads as it was checked; a page of the map that the
// kernel reads after the host changed the file faults (SIGBUS) instead of showing the host's
// bytes.
func TestMmap(t *testing.T) {
	good := content(4, 4*ChunkSize)
	host := hostFolder(t, map[string][]byte{"lib.so": good})
	_, mnt, _ := mount(t, host, []Entry{trustedEntry("lib.so", "lib.so", good)})
	cmd := exec.Command(os.Args[0], "-test.run=^TestMmapHelper$")
	cmd.Env = append(os.Environ(), mmapHelperEnv+"="+filepath.Join(mnt, "lib.so"))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer stdin.Close()
	out := bufio.NewScanner(stdout)
	line := func() string {
		if !out.Scan() {
			t.Fatalf("the helper stopped: %v", out.Err())
		}
		return out.Text()
	}
	if got, want := line(), fmt.Sprintf("sha256=%x", sha256.Sum256(good[:ChunkSize])); got != want {
		t.Fatalf("the map's first chunk: %s, want %s", got, want)
	}
	off := 3*ChunkSize + 12345
	f, err := os.OpenFile(filepath.Join(host, "lib.so"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{^good[off]}, int64(off))
	f.Close()
	fmt.Fprintln(stdin, 10)
	if got := line(); got != fmt.Sprint(good[10]) {
		t.Errorf("the map's byte 10, in a page read before the change: %s, want %d", got, good[10])
	}
	fmt.Fprintln(stdin, off)
	if got := line(); got != "fault" {
		t.Errorf("the map's changed byte: %s, want a fault (the checked byte is %d)", got, good[off])
	}
}

// TestConcurrentFirstOpens: opens that race to be the first wait for one check, and all read
// the checked content.
func TestConcurrentFirstOpens(t *testing.T) {
	good := content(5, 5*ChunkSize+77)
	host := hostFolder(t, map[string][]byte{"big": good})
	s, mnt, _ := mount(t, host, []Entry{trustedEntry("a", "big", good), trustedEntry("b/c", "big", good)})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			p := filepath.Join(mnt, []string{"a", "b/c"}[i%2])
			if b, err := os.ReadFile(p); err != nil || !bytes.Equal(b, good) {
				t.Errorf("%s: %v, equal %v", p, err, bytes.Equal(b, good))
			}
		})
	}
	wg.Wait()
	if st := s.Stats(); st.Files != 1 {
		t.Errorf("checked %d times, want once for both entries of the host file", st.Files)
	}
}

// TestLinks: trustfs never follows a symbolic link that the host plants on a trusted file's
// path, before or after its check; an Unchecked folder serves the links it holds as links.
func TestLinks(t *testing.T) {
	good := []byte("trusted")
	host := hostFolder(t, map[string][]byte{"real/lib.so": good, "evil/lib.so": []byte("evil!!!"), "real/other": []byte("x")})
	_, mnt, logs := mount(t, host, []Entry{
		trustedEntry("t/lib.so", "real/lib.so", good),
		trustedEntry("t/late.so", "real/other", []byte("x")),
		{Path: "u", Kind: Unchecked, Host: "real"},
		trustedEntry("u/link", "real/lib.so", good),
	})
	if b, err := os.ReadFile(filepath.Join(mnt, "t/lib.so")); err != nil || !bytes.Equal(b, good) {
		t.Fatalf("t/lib.so: %q, %v", b, err)
	}
	if err := os.Symlink("lib.so", filepath.Join(host, "real/link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(host, "real/passwd")); err != nil {
		t.Fatal(err)
	}
	if target, err := os.Readlink(filepath.Join(mnt, "u/passwd")); err != nil || target != "/etc/passwd" {
		t.Errorf("an unchecked link: %q, %v", target, err)
	}
	if info, err := os.Stat(filepath.Join(mnt, "u/link")); err != nil || !info.Mode().IsRegular() {
		t.Errorf("a trusted entry over a host link: %v, %v", info, err)
	}
	// The host swaps the folder for a link to another one, after one file's check and before
	// the other's.
	if err := os.Rename(filepath.Join(host, "real"), filepath.Join(host, "real.old")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("evil", filepath.Join(host, "real")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"t/lib.so", "t/late.so"} {
		if b, err := readAll(filepath.Join(mnt, p)); err == nil || bytes.Contains(b, []byte("evil")) {
			t.Errorf("%s through a link: %q, %v", p, b, err)
		}
	}
	if !strings.Contains(logs.String(), "a symbolic link or a way out of the host folder on the path") {
		t.Errorf("the link is not logged:\n%s", logs)
	}
}

// readAll reads the file at p, after asking the kernel to drop what it cached of it.
func readAll(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
	return io.ReadAll(f)
}

// TestUnchecked: an Unchecked folder serves the host's files as they are, with changes seen at
// the next open, beside the trusted entries inside it, which are checked all the same.
func TestUnchecked(t *testing.T) {
	good := []byte("trusted")
	host := hostFolder(t, map[string][]byte{"lib/libc.so": good, "lib/libm.so": []byte("m"), "lib/py/os.py": []byte("os"), "out.txt": []byte("o")})
	_, mnt, _ := mount(t, host, []Entry{
		{Path: "0", Kind: Unchecked, Host: "lib"},
		trustedEntry("0/libc.so", "lib/libc.so", good),
		{Path: "0/mnt/point", Kind: Folder},
		{Path: "1", Kind: Unchecked, Host: "out.txt"},
	})
	if got, err := names(filepath.Join(mnt, "0")); err != nil || !slices.Equal(got, []string{"libc.so", "libm.so", "mnt", "py"}) {
		t.Errorf("0 lists %q, %v", got, err)
	}
	for p, want := range map[string]string{"0/libm.so": "m", "0/py/os.py": "os", "1": "o"} {
		if b, err := os.ReadFile(filepath.Join(mnt, p)); err != nil || string(b) != want {
			t.Errorf("%s: %q, %v; want %q", p, b, err, want)
		}
	}
	for name, b := range map[string]string{"lib/libm.so": "changed", "lib/libc.so": "EVILEVIL"} {
		if err := os.WriteFile(filepath.Join(host, name), []byte(b), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(mnt, "0/libm.so")); err != nil || string(b) != "changed" {
		t.Errorf("0/libm.so after the host changed it: %q, %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(mnt, "0/libc.so")); !errors.Is(err, syscall.EACCES) {
		t.Errorf("a changed trusted file in an unchecked folder: %q, %v; want EACCES", b, err)
	}
	// A name looked up in vain is not remembered: the host may make it at once.
	if _, err := os.Stat(filepath.Join(mnt, "0/new.so")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("0/new.so before the host makes it: %v", err)
	}
	if err := os.WriteFile(filepath.Join(host, "lib/new.so"), []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(mnt, "0/new.so")); err != nil || string(b) != "new" {
		t.Errorf("0/new.so once the host made it: %q, %v", b, err)
	}
}

// TestEntries: a set of entries that does not make a tree is refused, naming the entry.
func TestEntries(t *testing.T) {
	for _, tc := range []struct {
		entries []Entry
		want    string
	}{
		{[]Entry{{Path: "a", Kind: File}, {Path: "a", Kind: Folder}}, "two trusted-file entries at a"},
		{[]Entry{{Path: "a", Kind: Trusted}, {Path: "a/b", Kind: Folder}}, "trusted-file entry a/b lies inside the file a"},
		{[]Entry{{Path: "a/b", Kind: Folder}, {Path: "a", Kind: File}}, "trusted-file entries lie inside the file a"},
		{[]Entry{{Path: "", Kind: Folder}}, `trusted-file entry "": not a clean relative path`},
		{[]Entry{{Path: "/a", Kind: Folder}}, `trusted-file entry "/a": not a clean relative path`},
		{[]Entry{{Path: "a/../../b", Kind: Folder}}, `trusted-file entry "a/../../b": not a clean relative path`},
		{[]Entry{{Path: "../b", Kind: Folder}}, `trusted-file entry "../b": not a clean relative path`},
	} {
		if _, err := newTree(tc.entries); err == nil || err.Error() != tc.want {
			t.Errorf("%v: %v, want %q", tc.entries, err, tc.want)
		}
	}
}

// failingReader fails its reads from an offset on.
type failingReader struct {
	r    io.ReaderAt
	from int64
}

func (f failingReader) ReadAt(b []byte, off int64) (int, error) {
	if off+int64(len(b)) > f.from {
		return 0, io.ErrUnexpectedEOF
	}
	return f.r.ReadAt(b, off)
}

// tagsOf returns tagOf for hashChunks under tg, for the file numbered 0.
func tagsOf(tg *tagger) func(int64, []byte) tag {
	return func(i int64, b []byte) tag { return tg.tag(0, i, b) }
}

// TestHashChunks: the hash of the whole and the tag of each chunk, with one worker or several,
// and a read that fails stops the check with its error.
func TestHashChunks(t *testing.T) {
	tg, err := newTagger()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, procs := range []int{1, 3} {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
		for _, size := range []int{0, 1, ChunkSize - 1, ChunkSize, ChunkSize + 1, 9*ChunkSize + 7} {
			b := content(uint64(size), size)
			tags, whole, err := hashChunks(ctx, bytes.NewReader(b), int64(size), runtime.GOMAXPROCS(0), time.Minute, tagsOf(tg))
			if err != nil || whole != sha256.Sum256(b) || len(tags) != (size+ChunkSize-1)/ChunkSize {
				t.Errorf("%d procs, %d bytes: %v, %d tags, whole ok %v", procs, size, err, len(tags), whole == sha256.Sum256(b))
				continue
			}
			for i, tg1 := range tags {
				if tg1 != tg.tag(0, int64(i), b[i*ChunkSize:min((i+1)*ChunkSize, size)]) {
					t.Errorf("%d procs, %d bytes: the tag of chunk %d", procs, size, i)
				}
			}
		}
		b := content(6, 20*ChunkSize)
		if _, _, err := hashChunks(ctx, failingReader{bytes.NewReader(b), 7 * ChunkSize}, int64(len(b)), runtime.GOMAXPROCS(0), time.Minute, tagsOf(tg)); err != io.ErrUnexpectedEOF {
			t.Errorf("%d procs: a failing read: %v", procs, err)
		}
	}
}

// TestTags: a tag depends on the chunk's bytes, its index, its file and the mount's key.
func TestTags(t *testing.T) {
	tg, err := newTagger()
	if err != nil {
		t.Fatal(err)
	}
	other, err := newTagger()
	if err != nil {
		t.Fatal(err)
	}
	b := content(1, ChunkSize)
	flipped := slices.Clone(b)
	flipped[ChunkSize-1] ^= 1
	want := tg.tag(1, 2, b)
	for name, got := range map[string]tag{
		"a bit flipped":     tg.tag(1, 2, flipped),
		"a byte cut":        tg.tag(1, 2, b[:ChunkSize-1]),
		"another index":     tg.tag(1, 3, b),
		"another file":      tg.tag(2, 2, b),
		"another mount key": other.tag(1, 2, b),
	} {
		if got == want {
			t.Errorf("%s: same tag", name)
		}
	}
	if tg.tag(1, 2, slices.Clone(b)) != want {
		t.Error("the same chunk's tag differs")
	}
}

// stallingReader gives its first chunk and then blocks every read until release is closed.
type stallingReader struct {
	r       io.ReaderAt
	release chan struct{}
}

func (s stallingReader) ReadAt(b []byte, off int64) (int, error) {
	if off > 0 {
		<-s.release
	}
	return s.r.ReadAt(b, off)
}

// TestHashChunksStall: a host file that stops answering fails the check once no chunk has come
// for the timeout, and an interrupted caller's at once, without waiting for the blocked reads.
func TestHashChunksStall(t *testing.T) {
	tg, err := newTagger()
	if err != nil {
		t.Fatal(err)
	}
	b := content(2, 8*ChunkSize)
	release := make(chan struct{})
	defer close(release)
	r := stallingReader{bytes.NewReader(b), release}
	begin := time.Now()
	if _, _, err := hashChunks(context.Background(), r, int64(len(b)), runtime.GOMAXPROCS(0), 200*time.Millisecond, tagsOf(tg)); !errors.Is(err, errStalled) {
		t.Errorf("stalled host file: %v, want %v", err, errStalled)
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Errorf("the stalled check took %v, with a timeout of 200ms", d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	if _, _, err := hashChunks(ctx, r, int64(len(b)), runtime.GOMAXPROCS(0), time.Hour, tagsOf(tg)); !errors.Is(err, context.Canceled) {
		t.Errorf("interrupted check: %v, want %v", err, context.Canceled)
	}
}

// len returns how many chunks the cache holds.
func (c *chunkCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}

// TestChunkCache: the cache holds CacheChunks chunks at most, dropping the one used least lately.
func TestChunkCache(t *testing.T) {
	c := newChunkCache(CacheChunks)
	f := &trusted{}
	for i := range int64(CacheChunks + 10) {
		c.put(chunkKey{f, i}, []byte{byte(i)})
		c.get(chunkKey{f, 0}) // used all along
	}
	if n := c.len(); n != CacheChunks {
		t.Errorf("the cache holds %d chunks, want %d", n, CacheChunks)
	}
	if c.get(chunkKey{f, 0}) == nil || c.get(chunkKey{f, 1}) != nil || c.get(chunkKey{f, CacheChunks + 9}) == nil {
		t.Error("the cache did not drop the chunks used least lately")
	}
}

// TestReadThroughCache: reads of a large file, sequential and scattered, return its content,
// with the cache full and chunks verified again after being dropped from it.
func TestReadThroughCache(t *testing.T) {
	if testing.Short() {
		t.Skip("reads 2×CacheChunks MiB")
	}
	good := content(7, (2*CacheChunks+1)*ChunkSize+333)
	host := hostFolder(t, map[string][]byte{"big": good})
	s, mnt, _ := mount(t, host, []Entry{trustedEntry("big", "big", good)})
	for range 2 {
		if b, err := readAll(filepath.Join(mnt, "big")); err != nil || !bytes.Equal(b, good) {
			t.Fatalf("read: %v, equal %v", err, bytes.Equal(b, good))
		}
	}
	b := make([]byte, 3*ChunkSize)
	for _, off := range []int64{ChunkSize - 5, 0, int64(len(good)) - 3*ChunkSize, 17 * ChunkSize} {
		if err := readAt(filepath.Join(mnt, "big"), b, off); err != nil || !bytes.Equal(b, good[off:off+int64(len(b))]) {
			t.Errorf("read at %d: %v", off, err)
		}
	}
	if n := s.fsys.cache.len(); n != CacheChunks {
		t.Errorf("the cache holds %d chunks, want %d", n, CacheChunks)
	}
}

// TestSizeBeforeCheck: a size the host shows before the first check (a prefix of the trusted
// file, then restored) does not stay with the kernel to cut the checked content's reads short.
func TestSizeBeforeCheck(t *testing.T) {
	full := bytes.Repeat([]byte("A"), 10000)
	host := hostFolder(t, map[string][]byte{"f": full})
	_, mnt, _ := mount(t, host, []Entry{trustedEntry("f", "f", full)})
	if err := os.WriteFile(filepath.Join(host, "f"), full[:100], 0o644); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(mnt, "f")); err != nil || st.Size() != 100 {
		t.Fatalf("stat of the prefix: %v, %v", st, err)
	}
	if err := os.WriteFile(filepath.Join(host, "f"), full, 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(mnt, "f"))
	if err != nil || !bytes.Equal(b, full) {
		t.Errorf("read %d bytes, %v; want the %d checked", len(b), err, len(full))
	}
}

// TestReadAhead: mounted by root, the kernel reads ahead a chunk at a time.
func TestReadAhead(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root sets the read-ahead")
	}
	good := content(9, 3*ChunkSize)
	host := hostFolder(t, map[string][]byte{"f": good})
	_, mnt, _ := mount(t, host, []Entry{trustedEntry("f", "f", good)})
	var st unix.Stat_t
	if err := unix.Stat(mnt, &st); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(bdiReadAhead(st.Dev))
	if err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(ChunkSize>>10) {
		t.Errorf("read_ahead_kb of the mount: %q, %v; want %d", b, err, ChunkSize>>10)
	}
}

// stallingHost is a FUSE filesystem of one file, "f", whose reads past its first chunk block
// until release is closed: a host filesystem that stops answering.
type stallingHost struct {
	gofs.Inode
	content []byte
	release chan struct{}
}

func (h *stallingHost) OnAdd(ctx context.Context) {
	f := &stallingFile{host: h}
	h.AddChild("f", h.NewPersistentInode(ctx, f, gofs.StableAttr{Mode: syscall.S_IFREG}), false)
}

type stallingFile struct {
	gofs.Inode
	host *stallingHost
}

func (f *stallingFile) Getattr(ctx context.Context, _ gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode, out.Size = syscall.S_IFREG|0o444, uint64(len(f.host.content))
	return 0
}

func (f *stallingFile) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	return nil, fuse.FOPEN_DIRECT_IO, 0
}

func (f *stallingFile) Read(ctx context.Context, _ gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if off >= ChunkSize {
		<-f.host.release
	}
	n := copy(dest, f.host.content[min(off, int64(len(f.host.content))):])
	return fuse.ReadResultData(dest[:n]), 0
}

// TestHostTimeout: a host filesystem that stops answering during a trusted file's first check
// fails the open with EIO after Options.HostTimeout, and a later open too, instead of hanging;
// once the host answers again, the file opens.
func TestHostTimeout(t *testing.T) {
	good := content(10, 3*ChunkSize)
	release := make(chan struct{})
	hostMnt := t.TempDir()
	hostSrv, err := gofs.Mount(hostMnt, &stallingHost{content: good, release: release}, &gofs.Options{
		MountOptions: fuse.MountOptions{DirectMountStrict: os.Geteuid() == 0, AllowOther: true, Name: "stalling"},
	})
	if err != nil {
		t.Skipf("skipped: cannot mount the stalling host filesystem: %v", err)
	}
	t.Cleanup(func() {
		hostSrv.Unmount()
		hostSrv.Wait()
	})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock)
	_, mnt, logs := mountWith(t, hostMnt, []Entry{trustedEntry("f", "f", good)}, Options{HostTimeout: 300 * time.Millisecond})
	for i := range 2 {
		begin := time.Now()
		_, err := os.ReadFile(filepath.Join(mnt, "f"))
		if !errors.Is(err, syscall.EIO) {
			t.Errorf("open %d while the host does not answer: %v, want EIO", i, err)
		}
		if d := time.Since(begin); d > 10*time.Second {
			t.Errorf("open %d took %v with a host timeout of 300ms", i, d)
		}
	}
	if !strings.Contains(logs.String(), "did not answer in time") {
		t.Errorf("the timeout is not logged:\n%s", logs)
	}
	unblock()
	if b, err := os.ReadFile(filepath.Join(mnt, "f")); err != nil || !bytes.Equal(b, good) {
		t.Errorf("open once the host answers: %v, equal %v", err, bytes.Equal(b, good))
	}
}

// TestEvictedChunkChanged: a chunk that was verified, served and then dropped from the chunk
// cache is verified again when it is read again, so that a host that changed it meanwhile gets
// EIO, while a chunk still in the cache is served as it was checked.
func TestEvictedChunkChanged(t *testing.T) {
	if testing.Short() {
		t.Skip("reads 2×CacheChunks MiB")
	}
	good := content(11, (CacheChunks+4)*ChunkSize)
	host := hostFolder(t, map[string][]byte{"big": good})
	s, mnt, logs := mount(t, host, []Entry{trustedEntry("big", "big", good)})
	p := filepath.Join(mnt, "big")
	// Every chunk read once: chunk 0 is verified, served, and then dropped from the cache.
	if b, err := readAll(p); err != nil || !bytes.Equal(b, good) {
		t.Fatalf("read: %v, equal %v", err, bytes.Equal(b, good))
	}
	s.fsys.filesMu.Lock()
	file := s.fsys.files[fileKey{"big", sha256.Sum256(good)}]
	s.fsys.filesMu.Unlock()
	if s.fsys.cache.get(chunkKey{file, 0}) != nil {
		t.Fatal("chunk 0 is still in the cache")
	}
	f, err := os.OpenFile(filepath.Join(host, "big"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	last := int64(len(good) - ChunkSize)
	for _, off := range []int64{100, last + 100} {
		if _, err := f.WriteAt([]byte("EVIL"), off); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	b := make([]byte, 100)
	if err := readAt(p, b, 0); !errors.Is(err, syscall.EIO) {
		t.Errorf("read of the changed chunk dropped from the cache: %v, want EIO", err)
	}
	if err := readAt(p, b, last+50); err != nil || !bytes.Equal(b, good[last+50:last+150]) {
		t.Errorf("read of the changed chunk still in the cache: %v, %q; want the checked bytes", err, b)
	}
	if !strings.Contains(logs.String(), "changed since it was checked") {
		t.Errorf("the change is not logged:\n%s", logs)
	}
}

// TestCreatable: a Creatable entry is absent until created; creating it makes the host file
// beneath the host folder, owned by Options.Owner, which the creator then writes and reads
// through the mount; no other name may be made, and nothing may go. A link that the host
// plants on the way fails the creation.
func TestCreatable(t *testing.T) {
	host := hostFolder(t, map[string][]byte{"out/.keep": nil, "lib/libc.so": []byte("c")})
	os.Symlink("out", filepath.Join(host, "link"))
	_, mnt, _ := mountWith(t, host, []Entry{
		{Path: "0/result.txt", Kind: Creatable, Host: "out/result.txt"},
		{Path: "1/result.txt", Kind: Creatable, Host: "link/result.txt"},
		trustedEntry("2/libc.so", "lib/libc.so", []byte("c")),
	}, Options{Owner: &Owner{UID: 1234, GID: 5678}})
	result := filepath.Join(mnt, "0/result.txt")
	if _, err := os.Stat(result); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("before it is created: %v", err)
	}
	if got, err := names(filepath.Join(mnt, "0")); err != nil || len(got) != 0 {
		t.Errorf("0 lists %q, %v before the file is created", got, err)
	}
	if err := os.WriteFile(result, []byte("42\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(host, "out/result.txt"), &st); err != nil || st.Uid != 1234 || st.Gid != 5678 || st.Mode&0o777 != 0o640 {
		t.Errorf("the host file: %+v, %v; want 1234:5678, 0640", st, err)
	}
	if b, err := os.ReadFile(filepath.Join(host, "out/result.txt")); err != nil || string(b) != "42\n" {
		t.Errorf("the host file holds %q, %v", b, err)
	}
	// Written again, shorter: truncated.
	if err := os.WriteFile(result, []byte("7\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(result); err != nil || string(b) != "7\n" {
		t.Errorf("read back: %q, %v", b, err)
	}
	if got, err := names(filepath.Join(mnt, "0")); err != nil || !slices.Equal(got, []string{"result.txt"}) {
		t.Errorf("0 lists %q, %v once created", got, err)
	}
	for _, p := range []string{"0/other.txt", "2/new.so"} {
		if err := os.WriteFile(filepath.Join(mnt, p), nil, 0o644); !errors.Is(err, syscall.EACCES) {
			t.Errorf("create %s: %v, want EACCES", p, err)
		}
	}
	for _, p := range []string{"0/result.txt", "2/libc.so"} {
		if err := os.Remove(filepath.Join(mnt, p)); !errors.Is(err, syscall.EROFS) {
			t.Errorf("remove %s: %v, want EROFS", p, err)
		}
	}
	if err := os.WriteFile(filepath.Join(mnt, "2/libc.so"), []byte("EVIL"), 0o644); err == nil {
		t.Error("a trusted file was written")
	}
	if err := os.WriteFile(filepath.Join(mnt, "1/result.txt"), nil, 0o644); err == nil {
		t.Error("created through a link")
	}
	if _, err := os.Lstat(filepath.Join(host, "out/result.txt")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(host, "lib/libc.so")); string(b) != "c" {
		t.Errorf("the trusted host file holds %q", b)
	}
}
