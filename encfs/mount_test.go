package encfs

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ppml/ppml/pf"

	"github.com/ppml/ppml/internal/testfiles"
)

var testKey = pf.Key{0x70, 0x70, 0x6d, 0x6c, 0x2d, 0x65, 0x6e, 0x63, 0x66, 0x73, 0x2d, 0x74, 0x65, 0x73, 0x74, 0x21}

// mount serves host at a new folder with key, and unmounts it when the test ends, checking
// that nothing stays mounted. It skips the test where FUSE cannot be used.
func mount(t testing.TB, host string, key pf.Key, opts Options) (string, *testfiles.LogBuffer) {
	t.Helper()
	_, mnt, logs := mountServer(t, host, key, opts)
	return mnt, logs
}

// mountServer is mount that also returns the server.
func mountServer(t testing.TB, host string, key pf.Key, opts Options) (*Server, string, *testfiles.LogBuffer) {
	t.Helper()
	if f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0); err != nil {
		t.Skipf("skipped: FUSE is not usable here (%v); encfs tests need /dev/fuse", err)
	} else {
		f.Close()
	}
	logs := &testfiles.LogBuffer{}
	opts.Logger = slog.New(slog.NewTextHandler(logs, nil))
	mnt := t.TempDir()
	s, err := Mount(mnt, host, key, opts)
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
		if mounted(t, mnt) {
			t.Errorf("%s is still mounted", mnt)
		}
	})
	return s, mnt, logs
}

// mounted reports whether dir is a mount point of this process's namespace.
func mounted(t testing.TB, dir string) bool {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 4 && fields[4] == dir {
			return true
		}
	}
	return false
}

// mmapHelperEnv names the file that TestMmapHelper maps, when the test binary runs as a helper.
const mmapHelperEnv = "ENCFS_TEST_MMAP_FILE"

// TestMmapHelper is not a test: mmapSum runs the test binary with it to read a file through a
// shared memory map in another process. A page fault on a FUSE file blocks its thread where the
// Go runtime cannot see it, which can deadlock a process that also serves the filesystem.
func TestMmapHelper(t *testing.T) {
	path := os.Getenv(mmapHelperEnv)
	if path == "" {
		t.Skip("helper process for mmapSum")
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(nil)
	if info.Size() > 0 {
		b, err := syscall.Mmap(int(f.Fd()), 0, int(info.Size()), syscall.PROT_READ, syscall.MAP_SHARED)
		if err != nil {
			t.Fatal(err)
		}
		sum = sha256.Sum256(b)
		syscall.Munmap(b)
	}
	fmt.Printf("sha256=%x\n", sum)
}

// mmapSum returns the SHA-256 of the file at path, read through a memory map by another process.
func mmapSum(t *testing.T, path string) [32]byte {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestMmapHelper$", "-test.v")
	cmd.Env = append(os.Environ(), mmapHelperEnv+"="+path)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("mmap %s: %v\n%s", path, err, out)
	}
	var sum [32]byte
	_, after, ok := bytes.Cut(out, []byte("sha256="))
	if !ok || len(after) < 64 {
		t.Fatalf("mmap %s: no sum in\n%s", path, out)
	}
	if _, err := hex.Decode(sum[:], after[:64]); err != nil {
		t.Fatalf("mmap %s: %v", path, err)
	}
	return sum
}
