// Package rekey re-encrypts protected files in place under a new key: one file, or every file
// under a folder. Each file is replaced atomically and durably, so that a run stopped at any
// moment leaves every file whole under the old key or the new one, and a run made again
// recognises the files already under the new key and finishes the others.
package rekey

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"

	"github.com/ppml/ppml/internal/atomicfile"
	"github.com/ppml/ppml/internal/hostdir"
	"github.com/ppml/ppml/pf"
)

// ErrNeitherKey: a file opens with neither the old key nor the new one.
var ErrNeitherKey = errors.New("neither the old key nor the new one opens it")

// Options tune Run. The zero value keeps each file's format.
type Options struct {
	// Version is the format to write the files in: 1 or 2, or 0 to keep each file's.
	Version uint8
	// Done, if not nil, is called once for each file when it is rekeyed (rekeyed true) or found
	// under the new key already (false); one call at a time.
	Done func(name string, rekeyed bool)
}

// Result says what Run did.
type Result struct {
	Rekeyed int   // files re-encrypted under the new key
	Bytes   int64 // their plaintext bytes
	Skipped int   // files that were under the new key already
	// Removed are the temporary files that an interrupted run left behind, removed.
	Removed []string
	// Ignored are what the folder holds besides files and folders (symbolic links, devices),
	// left alone.
	Ignored []string
}

// bigFile is the host size above which a file is re-encrypted alone, on every core; smaller ones
// are re-encrypted one per core.
const bigFile = 1 << 20

// Run re-encrypts the protected file at root, or every file under the folder root, from oldKey
// to newKey, keeping each file's bound path. First it opens every file's metadata: if a file
// opens with neither key, or is no protected file, it returns an error naming it and changes
// nothing. A file that opens with newKey is left as it is. Then it removes the temporary files
// of an interrupted run and replaces each file under oldKey with its re-encryption
// (atomicfile.Replace). When ctx ends, the files in progress are finished and Run returns an
// error saying how many are left.
func Run(ctx context.Context, root string, oldKey, newKey pf.Key, opts *Options) (*Result, error) {
	if opts == nil {
		opts = &Options{}
	}
	if oldKey == newKey {
		return nil, errors.New("the old key and the new key are the same")
	}
	res := &Result{}
	t, files, temps, err := list(root, res)
	if err != nil {
		return nil, err
	}
	defer t.Close()
	// A name is no proof. What an interrupted run left lies beside the file it was replacing,
	// which is still there, and never opens with the old key (it was written under the new
	// one); anything else so named is the user's, rekeyed like any other file.
	var stale []string
	for _, tf := range temps {
		final, _ := atomicfile.TempFor(path.Base(tf.rel))
		var st syscall.Stat_t
		err := t.Stat(hostdir.Join(hostdir.Dir(tf.rel), final), &st)
		if underNew, kerr := keyOf(t, tf.rel, oldKey, newKey); err == nil && (kerr != nil || underNew) {
			stale = append(stale, tf.rel)
		} else {
			files = append(files, tf)
		}
	}
	var mu sync.Mutex
	done := func(name string, rekeyed bool, bytes int64) {
		mu.Lock()
		defer mu.Unlock()
		if rekeyed {
			res.Rekeyed++
			res.Bytes += bytes
		} else {
			res.Skipped++
		}
		if opts.Done != nil {
			opts.Done(name, rekeyed)
		}
	}
	old, err := classify(t, files, oldKey, newKey, func(rel string) { done(t.Name(rel), false, 0) })
	if err != nil {
		return nil, err
	}
	for _, rel := range stale {
		if err := t.Remove(rel, 0); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return res, err
		}
		res.Removed = append(res.Removed, t.Name(rel))
	}
	var small, big []file
	for _, f := range old {
		if f.size > bigFile {
			big = append(big, f)
		} else {
			small = append(small, f)
		}
	}
	rekey := func(f file) error {
		if testHookRekey != nil {
			testHookRekey(f.rel)
		}
		n, err := rekeyFile(t, f.rel, oldKey, newKey, opts.Version)
		if err != nil {
			return fmt.Errorf("%s: %w", t.Name(f.rel), err)
		}
		done(t.Name(f.rel), true, n)
		return nil
	}
	err = parallel(ctx, small, runtime.GOMAXPROCS(0), rekey)
	if err == nil {
		err = parallel(ctx, big, 1, rekey)
	}
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("interrupted: %w", err)
		}
		left := len(old) - res.Rekeyed
		return res, fmt.Errorf("%w (%d files rekeyed, %d left under the old key: run again to finish)", err, res.Rekeyed, left)
	}
	return res, nil
}

// testHookRekey, if set, is called before each file is rekeyed.
var testHookRekey func(rel string)

// file is a protected file found under the old key.
type file struct {
	rel  string // its path in the folder that Run walks
	size int64  // host size
}

// list opens the folder that Run walks, root or root's folder, and returns the regular files
// there (root itself, or those under the folder root) and those named as the temporary files of
// interrupted runs are. Every path beneath the folder is resolved without following a symbolic
// link (hostdir): a host that swaps a sub-folder for a link while Run runs fails that file
// instead of leading Run outside the folder.
func list(root string, res *Result) (t *hostdir.Root, files, temps []file, err error) {
	info, err := os.Stat(root)
	if err != nil {
		return nil, nil, nil, err
	}
	if !info.IsDir() {
		if !info.Mode().IsRegular() {
			return nil, nil, nil, fmt.Errorf("%s is not a regular file or folder", root)
		}
		t, err = hostdir.Open(filepath.Dir(root))
		if err != nil {
			return nil, nil, nil, err
		}
		return t, []file{{filepath.Base(root), info.Size()}}, nil, nil
	}
	if t, err = hostdir.Open(root); err != nil {
		return nil, nil, nil, err
	}
	var walk func(dir string) error
	walk = func(dir string) error {
		entries, err := t.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, d := range entries {
			rel := hostdir.Join(dir, d.Name())
			var st syscall.Stat_t
			switch {
			case d.IsDir():
				err = walk(rel)
			case !d.Type().IsRegular():
				res.Ignored = append(res.Ignored, t.Name(rel))
			default:
				if err = t.Stat(rel, &st); err == nil && atomicfile.IsTemp(d.Name()) {
					temps = append(temps, file{rel, st.Size})
				} else if err == nil {
					files = append(files, file{rel, st.Size})
				}
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(""); err != nil {
		t.Close()
		return nil, nil, nil, err
	}
	return t, files, temps, nil
}

// classify opens every file's metadata with oldKey, then newKey, on every core. It returns the
// files under oldKey, calls skip for each under newKey, and fails, before calling skip, if a file
// opens with neither, naming the first such file in files' order and counting the others.
func classify(t *hostdir.Root, files []file, oldKey, newKey pf.Key, skip func(rel string)) ([]file, error) {
	underNew := make([]bool, len(files))
	errs := make([]error, len(files))
	idx := make([]int, len(files))
	for i := range idx {
		idx[i] = i
	}
	parallel(context.Background(), idx, runtime.GOMAXPROCS(0), func(i int) error {
		underNew[i], errs[i] = keyOf(t, files[i].rel, oldKey, newKey)
		return nil
	})
	var first error
	bad := 0
	for i, err := range errs {
		if err != nil {
			if bad++; first == nil {
				first = fmt.Errorf("%s: %w", t.Name(files[i].rel), err)
			}
		}
	}
	if first != nil {
		if bad > 1 {
			first = fmt.Errorf("%w (and %d more files)", first, bad-1)
		}
		return nil, fmt.Errorf("%w: nothing was changed", first)
	}
	var old []file
	for i, f := range files {
		if underNew[i] {
			skip(f.rel)
		} else {
			old = append(old, f)
		}
	}
	return old, nil
}

// keyOf reports whether the protected file rel of t opens with newKey rather than oldKey.
func keyOf(t *hostdir.Root, rel string, oldKey, newKey pf.Key) (underNew bool, err error) {
	f, err := t.OpenFile(rel, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return false, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return false, err
	}
	for i, key := range []pf.Key{oldKey, newKey} {
		p, err := pf.Open(f, info.Size(), key, nil)
		if err == nil {
			p.Close()
			return i == 1, nil
		}
		if !errors.Is(err, pf.ErrKey) {
			return false, err
		}
	}
	return false, ErrNeitherKey
}

// rekeyFile replaces the protected file rel of t under oldKey with its re-encryption under
// newKey, in format version (0: the same), and returns its plaintext size. The file and its
// replacement are reached through its folder, opened once.
func rekeyFile(t *hostdir.Root, rel string, oldKey, newKey pf.Key, version uint8) (int64, error) {
	dir, err := t.OpenRoot(hostdir.Dir(rel))
	if err != nil {
		return 0, err
	}
	defer dir.Close()
	name := path.Base(rel)
	src, err := dir.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return 0, err
	}
	defer src.Close()
	info, err := src.Stat()
	if err != nil {
		return 0, err
	}
	var n int64
	err = atomicfile.Replace(dir, name, func(dst *os.File) error {
		n, err = pf.Reencrypt(dst, src, info.Size(), oldKey, newKey, &pf.Options{Version: version})
		return err
	})
	return n, err
}

// parallel calls f on each item, with at most workers calls at a time, until one fails or ctx
// ends; it returns the first error, or ctx's.
func parallel[T any](ctx context.Context, items []T, workers int, f func(T) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan T)
	var wg sync.WaitGroup
	for range min(workers, len(items)) {
		wg.Go(func() {
			for item := range next {
				if err := f(item); err != nil {
					cancel(err)
				}
			}
		})
	}
feed:
	for _, item := range items {
		select {
		case next <- item:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err := context.Cause(ctx); err != nil && ctx.Err() != nil {
		return err
	}
	return nil
}
