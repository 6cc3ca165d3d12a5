// Package atomicfile writes an output file or folder under a temporary name next to its final
// place and moves it there only when it is complete, so that a failed or interrupted run leaves
// no output behind, never a partial one.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/ppml/ppml/internal/hostdir"
)

// tempMark is in the name of every temporary output: ".NAME" + tempMark + random digits.
const tempMark = ".ppml-tmp-"

// ErrExists is returned, after the path, when the final path exists and replacing it was not
// asked for.
var ErrExists = errors.New("already exists")

// Pending is an output under construction at its temporary path.
type Pending struct {
	Temp   string // where to write now
	final  string
	force  bool
	remove func() // removes Temp, if not by its path
}

var (
	mu   sync.Mutex
	live = map[*Pending]bool{}
)

// New reserves a temporary name for final, in the same folder, as a file (dir false) or a folder.
// Unless force is set, final must not exist; with force, it is replaced when Commit is called.
// A file never replaces a folder, nor a folder a file.
func New(final string, dir, force bool) (*Pending, error) {
	if info, err := os.Stat(final); err == nil {
		switch {
		// Never replace a device, a pipe or a link to one (such as /dev/stdout).
		case !info.Mode().IsRegular() && !info.IsDir():
			return nil, fmt.Errorf("%s is not a regular file or folder: not replacing it", final)
		case info.IsDir() && !dir:
			return nil, fmt.Errorf("%s is a folder: a file does not replace it (name the output file itself, in the folder or elsewhere)", final)
		case !info.IsDir() && dir:
			return nil, fmt.Errorf("%s is a file: a folder does not replace it (remove it, or name another output)", final)
		}
	}
	if _, err := os.Lstat(final); err == nil && !force {
		return nil, fmt.Errorf("%s %w", final, ErrExists)
	}
	parent, base := filepath.Split(final)
	if parent == "" {
		parent = "."
	}
	if info, err := os.Stat(parent); err != nil || !info.IsDir() {
		return nil, fmt.Errorf("%s: %w", final, missingFolder(parent))
	}
	pattern := "." + base + tempMark + "*"
	var temp string
	var err error
	if dir {
		if temp, err = os.MkdirTemp(parent, pattern); err == nil {
			err = os.Chmod(temp, 0o755)
		}
	} else {
		var f *os.File
		if f, err = os.CreateTemp(parent, pattern); err == nil {
			temp = f.Name()
			err = f.Close()
		}
	}
	if err != nil {
		return nil, err
	}
	p := &Pending{Temp: temp, final: final, force: force}
	mu.Lock()
	live[p] = true
	mu.Unlock()
	return p, nil
}

// Commit moves the temporary output to its final path. A folder replaces an existing folder's
// files one by one, leaving files that it does not contain; if one of its files lies where the
// existing folder has a folder, or one of its folders where that has a file, Commit replaces
// nothing. If Commit fails, what was not moved yet is removed: a folder replaced with force may
// then be replaced in part.
func (p *Pending) Commit() error {
	err := p.commit()
	if err != nil {
		os.RemoveAll(p.Temp)
	}
	p.forget()
	return err
}

func (p *Pending) commit() error {
	info, err := os.Stat(p.Temp)
	if err != nil {
		return err
	}
	if !info.IsDir() {
		return p.move(p.Temp, p.final)
	}
	if _, err := os.Stat(p.final); errors.Is(err, fs.ErrNotExist) {
		return os.Rename(p.Temp, p.final)
	}
	if err := p.checkClashes(); err != nil {
		return err
	}
	err = filepath.WalkDir(p.Temp, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == p.Temp {
			return err
		}
		rel, _ := filepath.Rel(p.Temp, path)
		dst := filepath.Join(p.final, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o775)
		}
		return p.move(path, dst)
	})
	if err != nil {
		return err
	}
	return os.RemoveAll(p.Temp)
}

// checkClashes refuses, before anything is moved, a folder output whose file lies where the
// existing folder has a folder, or whose folder where it has a file or anything else.
func (p *Pending) checkClashes() error {
	return filepath.WalkDir(p.Temp, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == p.Temp {
			return err
		}
		rel, _ := filepath.Rel(p.Temp, path)
		dst := filepath.Join(p.final, rel)
		info, err := os.Stat(dst)
		switch {
		case err != nil:
			return nil // missing, or reported when moving
		case d.IsDir() && !info.IsDir():
			return fmt.Errorf("%s is a file, where the output has a folder: nothing was replaced (remove it, or write the output elsewhere)", dst)
		case !d.IsDir() && info.IsDir():
			return fmt.Errorf("%s is a folder, where the output has a file: nothing was replaced (remove it, or write the output elsewhere)", dst)
		}
		return nil
	})
}

// missingFolder says which folder of parent, a path as given, does not exist or is no folder:
// the first one, as written (the kernel resolves "sub/.." only if sub exists).
func missingFolder(parent string) error {
	for i := range len(parent) {
		if parent[i] != filepath.Separator || i == 0 {
			continue
		}
		if err := isFolder(parent[:i]); err != nil {
			return err
		}
	}
	if err := isFolder(parent); err != nil {
		return err
	}
	return fmt.Errorf("the folder %s does not exist", parent)
}

func isFolder(name string) error {
	info, err := os.Stat(name)
	switch {
	case err == nil && !info.IsDir():
		return fmt.Errorf("%s is not a folder", name)
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("the folder %s does not exist", name)
	}
	return err
}

// move renames src to dst. Without force it links first, which fails if dst appeared meanwhile.
func (p *Pending) move(src, dst string) error {
	if p.force {
		return os.Rename(src, dst)
	}
	if err := os.Link(src, dst); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s %w", dst, ErrExists)
		}
		return err
	}
	return os.Remove(src)
}

// Abort removes the temporary output.
func (p *Pending) Abort() {
	os.RemoveAll(p.Temp)
	p.forget()
}

func (p *Pending) forget() {
	mu.Lock()
	delete(live, p)
	mu.Unlock()
}

// AbortAll removes every temporary output not yet committed or aborted: call it when the
// program is interrupted.
func AbortAll() {
	mu.Lock()
	defer mu.Unlock()
	for p := range live {
		if p.remove != nil {
			p.remove()
		} else {
			os.RemoveAll(p.Temp)
		}
		delete(live, p)
	}
}

// WriteFile writes data to name with the given mode in one step: the file appears complete or
// not at all. Unless force is set, name must not exist.
func WriteFile(name string, data []byte, mode os.FileMode, force bool) error {
	p, err := New(name, false, force)
	if err != nil {
		return err
	}
	if err := os.WriteFile(p.Temp, data, mode); err == nil {
		err = os.Chmod(p.Temp, mode) // CreateTemp made it 0600
	}
	if err != nil {
		p.Abort()
		return err
	}
	return p.Commit()
}

// IsTemp reports whether name, a file's base name, is named as a temporary output is (the
// random part is digits), which a run that was killed may leave behind.
func IsTemp(name string) bool {
	_, ok := TempFor(name)
	return ok
}

// TempFor returns the base name of the output whose temporary output name would be, if it is
// named as one (see IsTemp).
func TempFor(name string) (final string, ok bool) {
	before, after, ok := strings.Cut(name, tempMark)
	if !ok || !strings.HasPrefix(before, ".") || len(before) < 2 || after == "" || strings.Trim(after, "0123456789") != "" {
		return "", false
	}
	return before[1:], true
}

// Replace replaces the regular file name in the folder dir with what write writes to a new
// file, durably: the new file gets name's permissions (and owner, where the caller may set it),
// is synced, then renamed over name, and the folder is synced. If write fails, AbortAll is
// called or the process dies before the rename, name is as it was; after it, name is the new
// file, even after a power loss. Hard links to name keep the old file. Every step is made
// relative to dir, never through a path, so that a host that swaps a folder for a symbolic link
// meanwhile cannot lead the file elsewhere.
func Replace(dir *hostdir.Root, name string, write func(*os.File) error) error {
	var st syscall.Stat_t
	if err := dir.Stat(name, &st); err != nil {
		return err
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return fmt.Errorf("%s is not a regular file: not replacing it", dir.Name(name))
	}
	var f *os.File
	var temp string
	for {
		temp = "." + name + tempMark + strconv.FormatUint(uint64(rand.Uint32()), 10)
		var err error
		f, err = dir.OpenFile(temp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrExist) {
			return err
		}
	}
	p := &Pending{Temp: dir.Name(temp), remove: func() { dir.Remove(temp, 0) }} // for AbortAll
	mu.Lock()
	live[p] = true
	mu.Unlock()
	defer p.forget()
	err := fill(f, &st, write)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = dir.Rename(temp, name, 0)
	}
	if err != nil {
		dir.Remove(temp, 0)
		return err
	}
	return dir.SyncDir("")
}

// fill writes the new file f with write, gives it the permissions and owner of the file that
// st describes, and syncs it.
func fill(f *os.File, st *syscall.Stat_t, write func(*os.File) error) error {
	if err := write(f); err != nil {
		return err
	}
	if err := f.Chmod(fs.FileMode(st.Mode).Perm()); err != nil {
		return err
	}
	if int(st.Uid) != os.Geteuid() || int(st.Gid) != os.Getegid() {
		if err := f.Chown(int(st.Uid), int(st.Gid)); err != nil {
			return fmt.Errorf("give the new file the owner of %s: %w", f.Name(), err)
		}
	}
	return f.Sync()
}
