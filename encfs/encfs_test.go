package encfs

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ppml/ppml/pf"
)

// The vectors were written by Gramine v1.9's gramine-sgx-pf-crypt; see their README.
const vectors = "../testdata/gramine/pf"

func vectorKey(t *testing.T, name string) pf.Key {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(vectors, name))
	if err != nil {
		t.Fatal(err)
	}
	var k pf.Key
	copy(k[:], b)
	return k
}

func TestGramineVectors(t *testing.T) {
	// gramine-sgx-pf-crypt ran in ct/ with "-o ct_4097.pf" and so on: serve ct/ with an empty
	// prefix, read-only, since these files belong to the repository.
	mnt, logs := mount(t, filepath.Join(vectors, "ct"), vectorKey(t, "wrap.key"), Options{ReadOnly: true})
	for file, plain := range map[string]string{
		"ct_0.pf":         "pt_0.bin",
		"ct_1.pf":         "pt_1.bin",
		"ct_3072.pf":      "pt_3072.bin",
		"ct_4096.pf":      "pt_4096.bin",
		"ct_4097.pf":      "pt_4097.bin",
		"ct_1048576.pf":   "pt_1048576.bin",
		"sub/sub_4097.pf": "pt_4097.bin",
		"stale_tail_1.pf": "pt_1.bin",
	} {
		want, err := os.ReadFile(filepath.Join(vectors, "pt", plain))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(mnt, file)
		got, err := os.ReadFile(p)
		if err != nil {
			t.Errorf("%s: %v", file, err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes that differ from the %d of %s", file, len(got), len(want), plain)
		}
		if info, err := os.Stat(p); err != nil || info.Size() != int64(len(want)) {
			t.Errorf("%s: stat says %v, %v; want %d bytes", file, info, err, len(want))
		}
		if got := mmapSum(t, p); got != sha256.Sum256(want) {
			t.Errorf("%s reads differently through a memory map", file)
		}
	}
	if err := os.WriteFile(filepath.Join(mnt, "new"), nil, 0o644); !errors.Is(err, syscall.EROFS) {
		t.Errorf("creating a file in a read-only mount: %v, want EROFS", err)
	}
	if _, err := os.OpenFile(filepath.Join(mnt, "ct_1.pf"), os.O_RDWR, 0); !errors.Is(err, syscall.EROFS) {
		t.Errorf("opening a file for writing in a read-only mount: %v, want EROFS", err)
	}
	if logs.String() != "" {
		t.Errorf("the mount logged:\n%s", logs)
	}
}

// copyVector copies the vector file to dir/name.
func copyVector(t *testing.T, file, dir, name string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(vectors, file))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// truncated writes a protected file bound to name into dir, with its last node cut off.
func truncated(t *testing.T, dir, name string, key pf.Key) {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := pf.Encrypt(f, bytes.NewReader(content(1, 100000)), key, name, nil); err != nil {
		t.Fatal(err)
	}
	info, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(info.Size() - pf.NodeSize); err != nil {
		t.Fatal(err)
	}
}

func TestIntegrityFailures(t *testing.T) {
	host := t.TempDir()
	copyVector(t, "neg/flip_data_last_1048576.pf", host, "ct_1048576.pf") // last data node tampered
	copyVector(t, "neg/otherkey_4097.pf", host, "ct_4097.pf")             // another key
	copyVector(t, "ct/ct_3072.pf", host, "renamed.pf")                    // bound to another path
	truncated(t, host, "trunc.pf", vectorKey(t, "wrap.key"))
	if err := os.WriteFile(filepath.Join(host, "plain.txt"), []byte("not protected"), 0o644); err != nil {
		t.Fatal(err)
	}
	mnt, logs := mount(t, host, vectorKey(t, "wrap.key"), Options{})

	// A damaged node: what comes before it reads, the node itself is EIO.
	f, err := os.Open(filepath.Join(mnt, "ct_1048576.pf"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join(vectors, "pt/pt_1048576.bin"))
	if err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 65536)
	if _, err := f.ReadAt(head, 0); err != nil || !bytes.Equal(head, want[:len(head)]) {
		t.Errorf("reading before the damaged node: %v", err)
	}
	if _, err := io.ReadAll(f); !errors.Is(err, syscall.EIO) {
		t.Errorf("reading the damaged node: %v, want EIO", err)
	}
	f.Close()
	hostFile := filepath.Join(host, "ct_1048576.pf")
	if n := strings.Count(logs.String(), hostFile); n != 1 {
		t.Errorf("%d log lines name %s, want 1:\n%s", n, hostFile, logs)
	}
	if !strings.Contains(logs.String(), pf.ErrDamaged.Error()) {
		t.Errorf("the log does not give the cause:\n%s", logs)
	}

	// Files that do not open: EIO and a log line each; they can still be listed, stat'ed and
	// unlinked, but not renamed or overwritten.
	for _, name := range []string{"ct_4097.pf", "renamed.pf", "trunc.pf", "plain.txt"} {
		p := filepath.Join(mnt, name)
		if _, err := os.ReadFile(p); !errors.Is(err, syscall.EIO) {
			t.Errorf("%s: read gives %v, want EIO", name, err)
		}
		if err := os.WriteFile(p, []byte("new"), 0o644); !errors.Is(err, syscall.EIO) {
			t.Errorf("%s: overwrite gives %v, want EIO", name, err)
		}
		if err := os.Rename(p, p+".moved"); !errors.Is(err, syscall.EIO) {
			t.Errorf("%s: rename gives %v, want EIO", name, err)
		}
		if !strings.Contains(logs.String(), filepath.Join(host, name)) {
			t.Errorf("no log line names %s:\n%s", name, logs)
		}
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s: stat: %v", name, err)
		}
		if err := os.Remove(p); err != nil {
			t.Errorf("%s: unlink: %v", name, err)
		}
	}
	for _, cause := range []error{pf.ErrKey, pf.ErrPath, pf.ErrTruncated, pf.ErrNotProtected} {
		if !strings.Contains(logs.String(), cause.Error()) {
			t.Errorf("no log line gives the cause %q:\n%s", cause, logs)
		}
	}
	entries, err := os.ReadDir(host)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("the host folder holds %d files, want only ct_1048576.pf", len(entries))
	}
	if strings.Contains(logs.String(), "c755e3f2") {
		t.Error("the key was logged")
	}
}

func TestAtomicReplacement(t *testing.T) {
	host := t.TempDir()
	mnt, _ := mount(t, host, testKey, Options{BoundPrefix: "out"})
	p := filepath.Join(mnt, "model.bin")
	old := content(1, 300000)
	if err := os.WriteFile(p, old, 0o644); err != nil {
		t.Fatal(err)
	}
	hostFile := filepath.Join(host, "model.bin")
	decrypt := func() []byte {
		t.Helper()
		b, err := decryptHost(hostFile, "out/model.bin")
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	temps := func() []string { return tempFiles(t, host) }

	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("changed"), 100000); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(200000); err != nil {
		t.Fatal(err)
	}
	// Until the file is closed, the host file keeps the old content and the changes are in a
	// temporary copy that the mount does not show.
	if !bytes.Equal(decrypt(), old) {
		t.Error("the host file changed before the file was closed")
	}
	if n := len(temps()); n != 1 {
		t.Errorf("%d temporary files, want 1", n)
	}
	if names, _ := os.ReadDir(mnt); len(names) != 1 {
		t.Errorf("the mount lists %d files, want only model.bin", len(names))
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	want := append(slices.Clone(old[:100000]), "changed"...)
	want = append(want, old[100007:200000]...)
	if !bytes.Equal(decrypt(), want) {
		t.Error("the host file does not hold the new content after close")
	}
	if n := len(temps()); n != 0 {
		t.Errorf("%d temporary files left after close", n)
	}

	// fsync commits too.
	f, err = os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write([]byte("tail")); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if got := decrypt(); !bytes.Equal(got, append(want, "tail"...)) {
		t.Error("fsync did not commit")
	}

	// A temporary file left by a crash is hidden, removed when its folder is listed, and its
	// name cannot be created in the mount.
	stale := filepath.Join(host, tempPrefix+"0123456789abcdef")
	if err := os.WriteFile(stale, []byte("left over"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(mnt, filepath.Base(stale))); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stat of a temporary name: %v, want ENOENT", err)
	}
	if _, err := os.ReadDir(mnt); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the left-over temporary file is still there: %v", err)
	}
	if err := os.WriteFile(filepath.Join(mnt, filepath.Base(stale)), nil, 0o600); !errors.Is(err, syscall.EPERM) {
		t.Errorf("creating a temporary name: %v, want EPERM", err)
	}
}

// encryptFile writes plain to dir/name as a protected file bound to name.
func encryptFile(t *testing.T, dir, name string, plain []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := pf.Encrypt(f, bytes.NewReader(plain), testKey, name, nil); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReadAheadDamaged(t *testing.T) {
	host := t.TempDir()
	plain := content(1, 3*readAheadMin)
	hostFile := encryptFile(t, host, "big.bin", plain)
	// Damage the data node that holds plaintext offset 2*readAheadMin.
	damageNodeAt(t, hostFile, 2*readAheadMin)

	mnt, logs := mount(t, host, testKey, Options{BoundPrefix: ""})
	r, err := os.Open(filepath.Join(mnt, "big.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, err := io.ReadAll(r)
	if !errors.Is(err, syscall.EIO) {
		t.Errorf("reading through the damaged node: %v, want EIO", err)
	}
	if len(got) > 2*readAheadMin || !bytes.Equal(got, plain[:len(got)]) {
		t.Errorf("read %d bytes before the damaged node at %d, not all of them right", len(got), 2*readAheadMin)
	}
	if n := strings.Count(logs.String(), hostFile); n != 1 {
		t.Errorf("%d log lines name %s, want 1:\n%s", n, hostFile, logs)
	}
}

func TestReadAheadThenWrite(t *testing.T) {
	host := t.TempDir()
	plain := content(2, 3*readAheadMin)
	encryptFile(t, host, "big.bin", plain)
	mnt, _ := mount(t, host, testKey, Options{})
	p := filepath.Join(mnt, "big.bin")
	r, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	buf := make([]byte, 1<<20)
	if _, err := io.ReadFull(r, buf); err != nil || !bytes.Equal(buf, plain[:len(buf)]) {
		t.Fatalf("first read: %v", err)
	}
	// A write while the read-ahead runs: readers see it, before and after it is committed.
	w, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	at := int64(2 * readAheadMin)
	if _, err := w.WriteAt([]byte(canary), at); err != nil {
		t.Fatal(err)
	}
	copy(plain[at:], canary)
	check := func() {
		t.Helper()
		got := make([]byte, len(plain))
		if _, err := r.ReadAt(got, 0); err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("reading after the write: %v, equal %v", err, bytes.Equal(got, plain))
		}
	}
	check()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	check()
	// A new pass from the start reads the committed file ahead again.
	if err := unix.Fadvise(int(r.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
	check()
}

func TestHostFileChanged(t *testing.T) {
	host := t.TempDir()
	mnt, _ := mount(t, host, testKey, Options{})
	p := filepath.Join(mnt, "f")
	if err := os.WriteFile(p, content(1, 100000), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.ReadFile(p); err != nil { // now in the kernel's cache
		t.Fatal(err)
	}
	// Another file of the same size replaces it in the host folder: the next open reads it.
	newer := content(2, 100000)
	tmp := t.TempDir()
	encryptFile(t, tmp, "f", newer)
	if err := os.Rename(filepath.Join(tmp, "f"), filepath.Join(host, "f")); err != nil {
		t.Fatal(err)
	}
	// The kernel's release of the read above comes after close returns: until it does, an open
	// shares the file still open. Once it has, the next open reads the new file.
	for i := 0; ; i++ {
		got, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(got, newer) {
			break
		}
		if i == 100 {
			t.Fatal("a file changed in the host folder reads as before, 2 s after it was closed")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestReadAheadFromMiddle reads a large file sequentially from offsets other than 0, as
// torch.load reads a zip file after its central directory, in reads of odd sizes, jumping about
// in between: every read must return the plaintext, and a damaged node ahead must still give
// EIO, logged once.
func TestReadAheadFromMiddle(t *testing.T) {
	host := t.TempDir()
	plain := content(3, 3*readAheadMin+12345)
	hostFile := encryptFile(t, host, "big.bin", plain)
	mnt, _ := mount(t, host, testKey, Options{})
	r, err := os.Open(filepath.Join(mnt, "big.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, start := range []int64{int64(len(plain)) - 100000, readAheadMin + 777, 5000, 2*readAheadMin - 1} {
		if err := unix.Fadvise(int(r.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 200003)
		for off := start; off < int64(len(plain)); {
			n, err := r.ReadAt(buf, off)
			if err != nil && err != io.EOF {
				t.Fatalf("read at %d (from %d): %v", off, start, err)
			}
			if !bytes.Equal(buf[:n], plain[off:off+int64(n)]) {
				t.Fatalf("read at %d (from %d): wrong plaintext", off, start)
			}
			off += int64(n)
			if err == io.EOF || n == 0 {
				break
			}
		}
	}

	// Damage the data node that holds plaintext offset 2*readAheadMin, and read from the middle
	// through a new mount: the first may still have the file open, with the node's plaintext,
	// until the kernel's release comes.
	r.Close()
	damageNodeAt(t, hostFile, 2*readAheadMin)
	mnt, logs := mount(t, host, testKey, Options{})
	r, err = os.Open(filepath.Join(mnt, "big.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := unix.Fadvise(int(r.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
	from := int64(readAheadMin + 4321)
	if _, err := r.Seek(from, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if !errors.Is(err, syscall.EIO) {
		t.Errorf("reading through the damaged node: %v, want EIO", err)
	}
	if from+int64(len(got)) > 2*readAheadMin || !bytes.Equal(got, plain[from:from+int64(len(got))]) {
		t.Errorf("read %d bytes from %d before the damaged node at %d, not all of them right", len(got), from, 2*readAheadMin)
	}
	if n := strings.Count(logs.String(), hostFile); n != 1 {
		t.Errorf("%d log lines name %s, want 1:\n%s", n, hostFile, logs)
	}
}

// damageNodeAt flips a byte of the data node of hostFile that holds plaintext offset off.
func damageNodeAt(t *testing.T, hostFile string, off int64) {
	t.Helper()
	node := (off - pf.MetaDataSize) / pf.NodeSize
	at := (node+2+node/96)*pf.NodeSize + 10
	f, err := os.OpenFile(hostFile, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := []byte{0}
	if _, err := f.ReadAt(b, at); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 1
	if _, err := f.WriteAt(b, at); err != nil {
		t.Fatal(err)
	}
}

// TestReadAheadPieces reads a large file with O_DIRECT, which hands encfs the reads as they are
// made, in pieces that lie within one read-ahead segment (answered from the segment) and pieces
// that cross segments (copied), by several readers at once.
func TestReadAheadPieces(t *testing.T) {
	// Once a reply has been sent, its bytes may be reused: wipe them, so that a reply sent
	// after it was unpinned would read zeros. (The hook goes after the mounts, which are
	// cleaned up first.)
	testHookReplySent = func(parts [][]byte) {
		for _, p := range parts {
			clear(p)
		}
	}
	t.Cleanup(func() { testHookReplySent = nil })
	host := t.TempDir()
	plain := content(3, 3*segmentSize+12345)
	encryptFile(t, host, "big.bin", plain)
	var wg sync.WaitGroup
	// Each reader has a mount of its own, since what one is sent is wiped.
	for _, piece := range []int{1 << 20, 700 << 10, 1<<20 + 4096} {
		mnt, _ := mount(t, host, testKey, Options{})
		wg.Go(func() {
			f, err := os.OpenFile(filepath.Join(mnt, "big.bin"), os.O_RDONLY|syscall.O_DIRECT, 0)
			if err != nil {
				t.Error(err)
				return
			}
			defer f.Close()
			got := make([]byte, 0, len(plain))
			buf := make([]byte, piece)
			for {
				n, err := f.Read(buf)
				got = append(got, buf[:n]...)
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Errorf("%d-byte reads: %v", piece, err)
					return
				}
			}
			if !bytes.Equal(got, plain) {
				t.Errorf("%d-byte reads: read %d bytes, not the plaintext's", piece, len(got))
			}
		})
	}
	wg.Wait()
}

// TestReadAheadsBounded reads more large files at once than a mount has read-aheads: the files
// beyond the bound are read without one, and correctly; a read-ahead that starts again elsewhere
// keeps its token, and one whose file is written to, read to its end or closed gives it back for
// another file's next sequential read. The reads use O_DIRECT, which hands encfs each read as
// it is made.
func TestReadAheadsBounded(t *testing.T) {
	host := t.TempDir()
	plains := make([][]byte, maxReadAheads+2)
	for i := range plains {
		plains[i] = content(uint64(i), readAheadMin+100000)
		encryptFile(t, host, fmt.Sprintf("f%d.bin", i), plains[i])
	}
	s, mnt, _ := mountServer(t, host, testKey, Options{})
	running := func() int { return len(s.fsys.readAheads) }
	check := func(want int) {
		t.Helper()
		if got := running(); got != want {
			t.Fatalf("%d read-aheads running, want %d", got, want)
		}
	}
	open := func(i, flag int) *os.File {
		t.Helper()
		f, err := os.OpenFile(filepath.Join(mnt, fmt.Sprintf("f%d.bin", i)), flag|syscall.O_DIRECT, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	const chunk = 256 << 10
	// read reads file i through f from off to the end (or a chunk only), checking the plaintext.
	read := func(f *os.File, i int, off int64, all bool) {
		t.Helper()
		buf := make([]byte, chunk)
		for off < int64(len(plains[i])) {
			n, err := f.ReadAt(buf, off)
			if err != nil && err != io.EOF {
				t.Fatal(err)
			}
			if !bytes.Equal(buf[:n], plains[i][off:off+int64(n)]) {
				t.Fatalf("f%d.bin at %d: other bytes than were encrypted", i, off)
			}
			off += int64(n)
			if !all {
				return
			}
		}
	}

	files := make([]*os.File, len(plains))
	files[0] = open(0, os.O_RDONLY)
	read(files[0], 0, 3*chunk, false) // not sequential: no read-ahead
	check(0)
	read(files[0], 0, 4*chunk, false) // sequential: a read-ahead from there
	check(1)
	read(files[0], 0, 0, false) // before it: it starts again at 0, with the same token
	check(1)
	for i := 1; i < len(files); i++ {
		files[i] = open(i, os.O_RDONLY)
		read(files[i], i, 0, false)
	}
	check(maxReadAheads)

	// A write replaces the file's content and stops its read-ahead; the last file, read without
	// one so far, takes the token on its next sequential read.
	w := open(1, os.O_WRONLY)
	if _, err := w.WriteAt([]byte{^plains[1][0]}, 0); err != nil {
		t.Fatal(err)
	}
	plains[1][0] ^= 0xff
	check(maxReadAheads - 1)
	last := len(files) - 1
	read(files[last], last, chunk, false)
	check(maxReadAheads)

	// A file read to its end gives its read-ahead's token back once the last reply is sent, to
	// the next sequential read of a file that has none, or of itself, which starts a new one.
	// A read of the end alone does not.
	read(files[3], 3, int64(len(plains[3])-chunk), false)
	read(files[2], 2, 0, true)
	waitReadAheads(t, s, maxReadAheads-1)
	read(files[last-1], last-1, chunk, false)
	check(maxReadAheads)
	read(files[4], 4, 0, true)
	waitReadAheads(t, s, maxReadAheads-1)
	read(files[2], 2, 0, false)
	check(maxReadAheads)

	for i, f := range files {
		read(f, i, 0, true)
	}
	w.Close()
	for _, f := range files {
		f.Close()
	}
	waitReadAheads(t, s, 0)
}

// waitReadAheads waits up to 5 s for the read-aheads running in s's mount to number want: the
// kernel releases a file, which stops its read-ahead, after close returns.
func waitReadAheads(t *testing.T, s *Server, want int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); len(s.fsys.readAheads) != want && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if got := len(s.fsys.readAheads); got != want {
		t.Fatalf("%d read-aheads running, want %d", got, want)
	}
}
