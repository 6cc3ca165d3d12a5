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
	"path/filepath"
	"runtime"
	"sync"

	"github.com/ppml/ppml/internal/atomicfile"
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
	files, temps, err := list(root, res)
	if err != nil {
		return nil, err
	}
	// A name is no proof. What an interrupted run left lies beside the file it was replacing,
	// which is still there, and never opens with the old key (it was written under the new
	// one); anything else so named is the user's, rekeyed like any other file.
	var stale []string
	for _, t := range temps {
		final, _ := atomicfile.TempFor(filepath.Base(t.name))
		_, err := os.Lstat(filepath.Join(filepath.Dir(t.name), final))
		if underNew, kerr := keyOf(t.name, oldKey, newKey); err == nil && (kerr != nil || underNew) {
			stale = append(stale, t.name)
		} else {
			files = append(files, t)
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
	old, err := classify(files, oldKey, newKey, func(name string) { done(name, false, 0) })
	if err != nil {
		return nil, err
	}
	for _, t := range stale {
		if err := os.Remove(t); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return res, err
		}
		res.Removed = append(res.Removed, t)
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
		n, err := rekeyFile(f.name, oldKey, newKey, opts.Version)
		if err != nil {
			return fmt.Errorf("%s: %w", f.name, err)
		}
		done(f.name, true, n)
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

// file is a protected file found under the old key.
type file struct {
	name string
	size int64 // host size
}

// list returns the regular files at root (root itself, or those under the folder root) and those
// named as the temporary files of interrupted runs are.
func list(root string, res *Result) (files, temps []file, err error) {
	info, err := os.Stat(root)
	if err != nil {
		return nil, nil, err
	}
	if !info.IsDir() {
		if !info.Mode().IsRegular() {
			return nil, nil, fmt.Errorf("%s is not a regular file or folder", root)
		}
		return []file{{root, info.Size()}}, nil, nil
	}
	err = filepath.WalkDir(root, func(name string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case d.IsDir():
			return nil
		case !d.Type().IsRegular():
			res.Ignored = append(res.Ignored, name)
		default:
			info, err := d.Info()
			if err != nil {
				return err
			}
			if atomicfile.IsTemp(d.Name()) {
				temps = append(temps, file{name, info.Size()})
			} else {
				files = append(files, file{name, info.Size()})
			}
		}
		return nil
	})
	return files, temps, err
}

// classify opens every file's metadata with oldKey, then newKey, on every core. It returns the
// files under oldKey, calls skip for each under newKey, and fails, before calling skip, if a file
// opens with neither, naming the first such file in files' order and counting the others.
func classify(files []file, oldKey, newKey pf.Key, skip func(name string)) ([]file, error) {
	underNew := make([]bool, len(files))
	errs := make([]error, len(files))
	idx := make([]int, len(files))
	for i := range idx {
		idx[i] = i
	}
	parallel(context.Background(), idx, runtime.GOMAXPROCS(0), func(i int) error {
		underNew[i], errs[i] = keyOf(files[i].name, oldKey, newKey)
		return nil
	})
	var first error
	bad := 0
	for i, err := range errs {
		if err != nil {
			if bad++; first == nil {
				first = fmt.Errorf("%s: %w", files[i].name, err)
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
			skip(f.name)
		} else {
			old = append(old, f)
		}
	}
	return old, nil
}

// keyOf reports whether the protected file name opens with newKey rather than oldKey.
func keyOf(name string, oldKey, newKey pf.Key) (underNew bool, err error) {
	f, err := os.Open(name)
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

// rekeyFile replaces the protected file name under oldKey with its re-encryption under newKey,
// in format version (0: the same), and returns its plaintext size.
func rekeyFile(name string, oldKey, newKey pf.Key, version uint8) (int64, error) {
	src, err := os.Open(name)
	if err != nil {
		return 0, err
	}
	defer src.Close()
	info, err := src.Stat()
	if err != nil {
		return 0, err
	}
	var n int64
	err = atomicfile.Replace(name, func(dst *os.File) error {
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
