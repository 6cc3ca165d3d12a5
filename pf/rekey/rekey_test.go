package rekey

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ppml/ppml/internal/atomicfile"
	"github.com/ppml/ppml/internal/hostdir"
	"github.com/ppml/ppml/pf"
)

var (
	oldKey = pf.Key{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	newKey = pf.Key{16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1}
)

// tree encrypts under oldKey files of several sizes and both formats under a new folder, each
// bound to a path of its own, and returns the folder and the plaintext by file.
func tree(t *testing.T) (string, map[string][]byte) {
	t.Helper()
	dir := t.TempDir()
	plain := map[string][]byte{}
	for i, size := range []int{0, 1, 3072, 3073, 40000, bigFile + 5000, 3 * bigFile} {
		for _, version := range []uint8{1, 2} {
			name := filepath.Join(dir, "sub", string(rune('a'+i))+string(rune('0'+version)))
			if i%2 == 0 {
				name = filepath.Join(dir, filepath.Base(name))
			}
			b := bytes.Repeat([]byte{byte(i), version}, size/2+1)[:size]
			plain[name] = b
			write(t, name, b, oldKey, version)
		}
	}
	return dir, plain
}

func write(t *testing.T, name string, b []byte, key pf.Key, version uint8) {
	t.Helper()
	os.MkdirAll(filepath.Dir(name), 0o755)
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := pf.Encrypt(f, bytes.NewReader(b), key, "bound/"+filepath.Base(name), &pf.Options{Version: version}); err != nil {
		t.Fatal(err)
	}
}

// check holds each file of plain to its plaintext, its bound path and the format its name ends
// with (or version, if not 0), under key.
func check(t *testing.T, plain map[string][]byte, key pf.Key, version uint8) {
	t.Helper()
	for name, want := range plain {
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		info, _ := f.Stat()
		var got bytes.Buffer
		_, err = pf.Decrypt(&got, f, info.Size(), key, &pf.Options{CheckPath: true, Path: "bound/" + filepath.Base(name)})
		h, _ := pf.Inspect(f, info.Size())
		f.Close()
		if err != nil || !bytes.Equal(got.Bytes(), want) {
			t.Fatalf("%s: %v", name, err)
		}
		v := version
		if v == 0 {
			v = name[len(name)-1] - '0'
		}
		if h.Major != v {
			t.Errorf("%s: format %d, want %d", name, h.Major, v)
		}
		if info.Mode().Perm() != 0o640 {
			t.Errorf("%s: mode %v, want 0640", name, info.Mode())
		}
	}
}

func TestRun(t *testing.T) {
	dir, plain := tree(t)
	os.Symlink("a1", filepath.Join(dir, "link"))
	// What a run killed before its rename leaves: a temporary file beside the original.
	stale := filepath.Join(dir, "sub", ".b1.ppml-tmp-123")
	os.WriteFile(stale, []byte("partial"), 0o600)
	// One file is under the new key already, as a run killed after its rename leaves it.
	underNew := filepath.Join(dir, "sub", "b2")
	write(t, underNew, plain[underNew], newKey, 2)

	var rekeyed, skipped []string
	res, err := Run(context.Background(), dir, oldKey, newKey, &Options{Done: func(name string, r bool) {
		if r {
			rekeyed = append(rekeyed, name)
		} else {
			skipped = append(skipped, name)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	check(t, plain, newKey, 0)
	if res.Rekeyed != len(plain)-1 || len(rekeyed) != res.Rekeyed || res.Skipped != 1 || !slices.Equal(skipped, []string{underNew}) {
		t.Fatalf("rekeyed %d (%d reported), skipped %q", res.Rekeyed, len(rekeyed), skipped)
	}
	var total int64
	for name, b := range plain {
		if name != underNew {
			total += int64(len(b))
		}
	}
	if res.Bytes != total {
		t.Errorf("Bytes = %d, want %d", res.Bytes, total)
	}
	if !slices.Equal(res.Removed, []string{stale}) || !slices.Equal(res.Ignored, []string{filepath.Join(dir, "link")}) {
		t.Errorf("removed %q, ignored %q", res.Removed, res.Ignored)
	}
	if _, err := os.Lstat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the stale temporary file is still there")
	}
	if target, _ := os.Readlink(filepath.Join(dir, "link")); target != "a1" {
		t.Errorf("the link was changed")
	}

	// Run again: everything is under the new key.
	res, err = Run(context.Background(), dir, oldKey, newKey, nil)
	if err != nil || res.Rekeyed != 0 || res.Skipped != len(plain) {
		t.Fatalf("second run: %+v, %v", res, err)
	}
	assertNoTemp(t, dir)
}

func TestRunFile(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "m2")
	plain := map[string][]byte{name: []byte("model weights")}
	write(t, name, plain[name], oldKey, 2)
	if _, err := Run(context.Background(), name, oldKey, newKey, &Options{Version: 1}); err != nil {
		t.Fatal(err)
	}
	check(t, plain, newKey, 1)
	assertNoTemp(t, dir)
}

// TestWrongKey: a file that opens with neither key, or that is no protected file, stops the run
// before anything changes, and is named.
func TestWrongKey(t *testing.T) {
	dir, _ := tree(t)
	stale := filepath.Join(dir, ".a1.ppml-tmp-9")
	os.WriteFile(stale, nil, 0o600)
	before := snapshot(t, dir)
	other := pf.Key{9}
	_, err := Run(context.Background(), dir, other, newKey, nil)
	if !errors.Is(err, ErrNeitherKey) || !strings.Contains(err.Error(), filepath.Join(dir, "a1")+": neither the old key nor the new one opens it (and 13 more files): nothing was changed") {
		t.Fatalf("wrong old key: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "sub", "README"), []byte("plain"), 0o644)
	_, err = Run(context.Background(), dir, oldKey, newKey, nil)
	if !errors.Is(err, pf.ErrNotProtected) || !strings.Contains(err.Error(), "README") {
		t.Fatalf("plain file: %v", err)
	}
	os.Remove(filepath.Join(dir, "sub", "README"))
	if after := snapshot(t, dir); !maps.Equal(before, after) {
		t.Fatal("a failed run changed the folder")
	}
	if _, err := Run(context.Background(), dir, oldKey, oldKey, nil); err == nil {
		t.Fatal("the same key twice is not refused")
	}
}

// TestInterrupted: a run whose context ends stops between files, says how many are left, and a
// second run finishes.
func TestInterrupted(t *testing.T) {
	dir, plain := tree(t)
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	res, err := Run(ctx, dir, oldKey, newKey, &Options{Done: func(string, bool) {
		if n++; n == 3 {
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) || res.Rekeyed >= len(plain) || !strings.Contains(err.Error(), "left under the old key: run again to finish") {
		t.Fatalf("interrupted: %+v, %v", res, err)
	}
	assertNoTemp(t, dir)
	if res, err = Run(context.Background(), dir, oldKey, newKey, nil); err != nil || res.Skipped+res.Rekeyed != len(plain) || res.Skipped == 0 {
		t.Fatalf("second run: %+v, %v", res, err)
	}
	check(t, plain, newKey, 0)
}

// TestFailedFile: a damaged file stops the run with its name; it is left as it was, and the files
// rekeyed before it stay rekeyed.
func TestFailedFile(t *testing.T) {
	dir, _ := tree(t)
	name := filepath.Join(dir, "g2") // 3 MiB: rekeyed last, after the small files
	b, _ := os.ReadFile(name)
	b[len(b)-100] ^= 1
	os.WriteFile(name, b, 0o640)
	res, err := Run(context.Background(), dir, oldKey, newKey, nil)
	if !errors.Is(err, pf.ErrDamaged) || !strings.HasPrefix(err.Error(), name+": ") || res.Rekeyed == 0 {
		t.Fatalf("damaged file: %+v, %v", res, err)
	}
	if after, _ := os.ReadFile(name); !bytes.Equal(after, b) {
		t.Fatal("the damaged file was changed")
	}
	assertNoTemp(t, dir)
}

func snapshot(t *testing.T, dir string) map[string]string {
	m := map[string]string{}
	filepath.Walk(dir, func(name string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			b, _ := os.ReadFile(name)
			m[name] = string(b)
		}
		return err
	})
	return m
}

func assertNoTemp(t *testing.T, dir string) {
	t.Helper()
	for name := range snapshot(t, dir) {
		if atomicfile.IsTemp(filepath.Base(name)) {
			t.Errorf("temporary file left: %s", name)
		}
	}
}

// TestTempNameOfUserFile: a protected file whose name only looks like a temporary file of an
// interrupted run (a workload chose it) is the user's: it is rekeyed, never removed; whether
// no file of the name it would replace is beside it, or it opens with the old key.
func TestTempNameOfUserFile(t *testing.T) {
	dir := t.TempDir()
	alone := filepath.Join(dir, ".results.ppml-tmp-2")
	beside, besideOf := filepath.Join(dir, ".x2.ppml-tmp-2"), filepath.Join(dir, "x2")
	plain := map[string][]byte{alone: []byte("the only copy of the results"), beside: []byte("another"), besideOf: []byte("a")}
	for name, b := range plain {
		write(t, name, b, oldKey, 2)
	}
	res, err := Run(context.Background(), dir, oldKey, newKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Removed) != 0 || res.Rekeyed != 3 {
		t.Fatalf("removed %q, rekeyed %d", res.Removed, res.Rekeyed)
	}
	check(t, plain, newKey, 0)
}

// TestFolderSwapped: a host that swaps a sub-folder for a symbolic link to a folder outside
// while Run runs fails that file; nothing outside the folder is read or written.
func TestFolderSwapped(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	b := []byte("weights")
	write(t, filepath.Join(dir, "sub", "x2"), b, oldKey, 2)
	write(t, filepath.Join(outside, "x2"), b, oldKey, 2)
	before := snapshot(t, outside)
	testHookRekey = func(rel string) {
		if rel == "sub/x2" {
			os.Rename(filepath.Join(dir, "sub"), filepath.Join(dir, "moved"))
			os.Symlink(outside, filepath.Join(dir, "sub"))
		}
	}
	defer func() { testHookRekey = nil }()
	_, err := Run(context.Background(), dir, oldKey, newKey, nil)
	if !errors.Is(err, hostdir.ErrLink) {
		t.Errorf("a folder swapped for a link: %v", err)
	}
	if after := snapshot(t, outside); !maps.Equal(before, after) {
		t.Error("a file outside the folder was replaced")
	}
}
