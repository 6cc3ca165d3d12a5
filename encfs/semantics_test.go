package encfs

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/ppml/ppml/pf"
)

// canary is in every plaintext the tests write; it must never show up in a host file.
const canary = "PPML-CANARY-5d41402abc4b2a76"

// content returns n pseudo-random bytes, the same for the same seed, with the canary in every
// 4 KiB.
func content(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 42))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	for off := 100; off+len(canary) <= n; off += 4096 {
		copy(b[off:], canary)
	}
	return b
}

// fileSemantics exercises the file operations a workload uses on the folder root and returns
// the files it leaves there, by slash-separated path. Run on a plain folder and on an encfs
// mount, it must pass with the same expectations.
func fileSemantics(t *testing.T, root string) map[string][]byte {
	want := map[string][]byte{}
	path := func(rel string) string { return filepath.Join(root, filepath.FromSlash(rel)) }
	check := func(rel string) {
		t.Helper()
		got, err := os.ReadFile(path(rel))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want[rel]) {
			t.Fatalf("%s: read %d bytes that differ from the %d expected", rel, len(got), len(want[rel]))
		}
		info, err := os.Stat(path(rel))
		if err != nil {
			t.Fatal(err)
		}
		if info.Size() != int64(len(want[rel])) || !info.Mode().IsRegular() {
			t.Fatalf("%s: stat says %v, %d bytes; want a regular file of %d bytes", rel, info.Mode(), info.Size(), len(want[rel]))
		}
	}
	write := func(rel string, b []byte) {
		t.Helper()
		if err := os.WriteFile(path(rel), b, 0o644); err != nil {
			t.Fatal(err)
		}
		want[rel] = slices.Clone(b)
		check(rel)
	}
	mustNotExist := func(rel string) {
		t.Helper()
		if _, err := os.Stat(path(rel)); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%s: stat gives %v, want it gone", rel, err)
		}
	}
	move := func(from, to string) {
		t.Helper()
		if err := os.Rename(path(from), path(to)); err != nil {
			t.Fatal(err)
		}
		want[to] = want[from]
		delete(want, from)
		mustNotExist(from)
		check(to)
	}

	// Create, then overwrite with more and with less.
	write("small.txt", []byte("hello "+canary))
	write("empty", nil)
	write("small.txt", content(1, 10000))
	write("small.txt", content(2, 5000))

	// Append.
	f, err := os.OpenFile(path("small.txt"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	more := content(3, 7000)
	if _, err := f.Write(more); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	want["small.txt"] = append(want["small.txt"], more...)
	check("small.txt")

	// Truncate up and down, by path and through a handle.
	truncate := func(rel string, size int) {
		t.Helper()
		if err := os.Truncate(path(rel), int64(size)); err != nil {
			t.Fatal(err)
		}
		want[rel] = resize(want[rel], size)
		check(rel)
	}
	truncate("small.txt", 20000)
	truncate("small.txt", 3000)
	truncate("small.txt", 3073)
	truncate("empty", 0)
	f, err = os.OpenFile(path("small.txt"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(4097); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte(canary), 4090); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	want["small.txt"] = resize(want["small.txt"], 4097)
	want["small.txt"] = append(want["small.txt"][:4090], canary...)
	check("small.txt")

	t.Run("random", func(t *testing.T) { randomReadsWrites(t, path("random.bin"), want, "random.bin") })

	// Rename within a folder, across folders, over an existing file, and a folder.
	for _, d := range []string{"sub", "sub/deeper", "dir1", "dir1/inner"} {
		if err := os.Mkdir(path(d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	move("small.txt", "small2.txt")
	move("small2.txt", "sub/deeper/moved.txt")
	write("sub/target", content(4, 9000))
	move("empty", "sub/target")
	write("dir1/inner/f", content(5, 50000))
	write("dir1/g", content(6, 100))
	if err := os.Rename(path("dir1"), path("sub/dir2")); err != nil {
		t.Fatal(err)
	}
	for _, rel := range []string{"dir1/inner/f", "dir1/g"} {
		to := "sub/dir2" + rel[len("dir1"):]
		want[to] = want[rel]
		delete(want, rel)
		check(to)
	}
	mustNotExist("dir1")

	// Rename a file, and the folder of another, while they are open and changed.
	if err := os.Mkdir(path("dir3"), 0o755); err != nil {
		t.Fatal(err)
	}
	write("moving", content(10, 30000))
	write("dir3/f", content(11, 30000))
	var open []*os.File
	for _, rel := range []string{"moving", "dir3/f"} {
		f, err := os.OpenFile(path(rel), os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt([]byte("before"), 100); err != nil {
			t.Fatal(err)
		}
		open = append(open, f)
	}
	if err := os.Rename(path("moving"), path("sub/moved")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path("dir3"), path("sub/dir4")); err != nil {
		t.Fatal(err)
	}
	for i, rel := range []string{"moving", "dir3/f"} {
		if _, err := open[i].WriteAt([]byte("after"), 40000); err != nil {
			t.Fatal(err)
		}
		if err := open[i].Close(); err != nil {
			t.Fatal(err)
		}
		b := want[rel]
		copy(b[100:], "before")
		want[[]string{"sub/moved", "sub/dir4/f"}[i]] = append(resize(b, 40000), "after"...)
		delete(want, rel)
	}
	check("sub/moved")
	check("sub/dir4/f")
	mustNotExist("dir3")

	// Unlink, also while the file is open: the handle still reads and writes.
	write("doomed", content(7, 5000))
	f, err = os.OpenFile(path("doomed"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path("doomed")); err != nil {
		t.Fatal(err)
	}
	delete(want, "doomed")
	mustNotExist("doomed")
	if _, err := f.WriteAt([]byte("still here"), 4000); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10)
	if _, err := f.ReadAt(buf, 4000); err != nil || string(buf) != "still here" {
		t.Fatalf("unlinked file reads %q, %v", buf, err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	mustNotExist("doomed")

	// Unlink a file changed through an open handle: the handle keeps the changes, which go with
	// it.
	write("changed", content(12, 5000))
	f, err = os.OpenFile(path("changed"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("before"), 100); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path("changed")); err != nil {
		t.Fatal(err)
	}
	delete(want, "changed")
	mustNotExist("changed")
	if _, err := f.WriteAt([]byte("after"), 6000); err != nil {
		t.Fatal(err)
	}
	buf = make([]byte, 6)
	if _, err := f.ReadAt(buf, 100); err != nil || string(buf) != "before" {
		t.Fatalf("unlinked changed file reads %q, %v", buf, err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	mustNotExist("changed")

	// Two handles of one file see each other's writes.
	write("shared", content(8, 20000))
	f1, err := os.OpenFile(path("shared"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f2, err := os.OpenFile(path("shared"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f1.WriteAt([]byte("written by f1"), 12345); err != nil {
		t.Fatal(err)
	}
	buf = make([]byte, 13)
	if _, err := f2.ReadAt(buf, 12345); err != nil || string(buf) != "written by f1" {
		t.Fatalf("second handle reads %q, %v", buf, err)
	}
	if _, err := f2.Write([]byte("f2")); err != nil { // at offset 0
		t.Fatal(err)
	}
	if err := f1.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f2.Close(); err != nil {
		t.Fatal(err)
	}
	copy(want["shared"][12345:], "written by f1")
	copy(want["shared"], "f2")
	check("shared")

	// Concurrent readers, and reads through a memory map.
	write("big.bin", content(9, 6<<20+1234)) // large enough to be read ahead
	concurrentReaders(t, path("big.bin"), want["big.bin"])
	if got := mmapSum(t, path("big.bin")); got != sha256.Sum256(want["big.bin"]) {
		t.Error("big.bin reads differently through a memory map")
	}

	// A folder that comes and goes.
	if err := os.Mkdir(path("gone"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path("gone")); err != nil {
		t.Fatal(err)
	}
	mustNotExist("gone")

	// The listing holds exactly the files and folders left.
	wantList := []string{"sub/", "sub/deeper/", "sub/dir2/", "sub/dir2/inner/", "sub/dir4/"}
	for rel := range want {
		wantList = append(wantList, rel)
	}
	slices.Sort(wantList)
	if got := list(t, root); !slices.Equal(got, wantList) {
		t.Errorf("the folder lists\n%q\nwant\n%q", got, wantList)
	}
	for rel := range want {
		check(rel)
	}
	return want
}

// resize cuts b to size or pads it with zeros.
func resize(b []byte, size int) []byte {
	if size <= len(b) {
		return b[:size]
	}
	return append(b, make([]byte, size-len(b))...)
}

// list returns every file and folder under root, folders with a trailing slash, sorted.
func list(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if e.IsDir() {
			rel += "/"
		}
		out = append(out, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// randomReadsWrites runs random writes, reads, truncations and syncs on a new file at p and
// checks every read against an in-memory copy, which it stores in want[rel].
func randomReadsWrites(t *testing.T, p string, want map[string][]byte, rel string) {
	r := rand.New(rand.NewPCG(7, 7))
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	var ref []byte
	// Offsets and lengths around node boundaries (3072 in the metadata node, then 4096 per
	// node, 96 nodes per MHT node) come up often.
	edges := []int{0, 1, 3071, 3072, 3073, 4095, 7167, 7168, 7169, 3072 + 96*4096, 3072 + 97*4096 - 1}
	pick := func(limit int) int {
		if r.IntN(3) == 0 {
			return max(0, min(edges[r.IntN(len(edges))]+r.IntN(3)-1, limit))
		}
		return r.IntN(limit + 1)
	}
	for i := range 400 {
		switch op := r.IntN(20); {
		case op < 9:
			off, n := pick(1<<20), pick(70000)
			data := content(uint64(i), n)
			if _, err := f.WriteAt(data, int64(off)); err != nil {
				t.Fatalf("op %d: write %d at %d: %v", i, n, off, err)
			}
			if end := off + n; end > len(ref) {
				ref = resize(ref, end)
			}
			copy(ref[off:], data)
		case op < 17:
			off, n := pick(len(ref)+10), pick(300000)
			buf := make([]byte, n)
			got, err := f.ReadAt(buf, int64(off))
			if err != nil && err != io.EOF {
				t.Fatalf("op %d: read %d at %d: %v", i, n, off, err)
			}
			var exp []byte
			if off < len(ref) {
				exp = ref[off:min(len(ref), off+n)]
			}
			if !bytes.Equal(buf[:got], exp) {
				t.Fatalf("op %d: read %d at %d (size %d): %d bytes differ from the %d expected", i, n, off, len(ref), got, len(exp))
			}
		case op < 19:
			size := pick(len(ref) + 50000)
			if err := f.Truncate(int64(size)); err != nil {
				t.Fatalf("op %d: truncate to %d: %v", i, size, err)
			}
			ref = resize(ref, size)
		default:
			if err := f.Sync(); err != nil {
				t.Fatalf("op %d: sync: %v", i, err)
			}
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, ref) {
		t.Fatalf("after closing, %d bytes differ from the %d expected", len(got), len(ref))
	}
	want[rel] = ref
}

// concurrentReaders reads the file at p from several handles at once.
func concurrentReaders(t *testing.T, p string, want []byte) {
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			f, err := os.Open(p)
			if err != nil {
				t.Error(err)
				return
			}
			defer f.Close()
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for range 50 {
				off, n := r.IntN(len(want)), 1+r.IntN(200000)
				buf := make([]byte, n)
				got, err := f.ReadAt(buf, int64(off))
				if err != nil && err != io.EOF {
					t.Error(err)
					return
				}
				if !bytes.Equal(buf[:got], want[off:min(len(want), off+n)]) {
					t.Errorf("reader %d: %d bytes at %d differ", g, n, off)
					return
				}
			}
			if g == 0 { // and one sequential reader
				all, err := io.ReadAll(io.NewSectionReader(f, 0, int64(len(want))+1))
				if err != nil || !bytes.Equal(all, want) {
					t.Errorf("sequential reader: %d bytes, %v", len(all), err)
				}
			}
		})
	}
	wg.Wait()
}

func TestSemanticsPlainFolder(t *testing.T) {
	fileSemantics(t, t.TempDir())
}

func TestSemanticsEncfs(t *testing.T) {
	for _, prefix := range []string{"enc_files", "", "/abs/./mount//"} {
		t.Run("prefix="+prefix, func(t *testing.T) {
			host := t.TempDir()
			mnt, logs := mount(t, host, testKey, Options{BoundPrefix: prefix})
			want := fileSemantics(t, mnt)
			checkHost(t, host, prefix, want)
			if logs.String() != "" {
				t.Errorf("the mount logged:\n%s", logs)
			}
		})
	}
}

// checkHost checks that the host folder holds exactly the files of want, each a protected file
// bound to its path under prefix that decrypts to its plaintext, and that no host file holds
// the canary.
func checkHost(t *testing.T, host, prefix string, want map[string][]byte) {
	t.Helper()
	files := 0
	err := filepath.WalkDir(host, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		files++
		raw, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.Contains(raw, []byte(canary)) {
			t.Errorf("host file %s holds plaintext", p)
		}
		rel, _ := filepath.Rel(host, p)
		rel = filepath.ToSlash(rel)
		exp, ok := want[rel]
		if !ok {
			t.Errorf("unexpected host file %s", rel)
			return nil
		}
		bound := pf.NormalizePath(prefix + "/" + rel)
		if prefix == "" {
			bound = rel
		}
		var out bytes.Buffer
		if _, err := pf.Decrypt(&out, bytes.NewReader(raw), int64(len(raw)), testKey, &pf.Options{CheckPath: true, Path: bound}); err != nil {
			t.Errorf("host file %s: %v", rel, err)
		} else if !bytes.Equal(out.Bytes(), exp) {
			t.Errorf("host file %s decrypts to %d bytes that differ from the %d expected", rel, out.Len(), len(exp))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files != len(want) {
		t.Errorf("the host folder holds %d files, want %d", files, len(want))
	}
}
