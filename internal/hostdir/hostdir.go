// Package hostdir resolves paths beneath a host folder that the host may change at any moment:
// every path is resolved without following a symbolic link and without leaving the folder
// (openat2 with RESOLVE_BENEATH and RESOLVE_NO_SYMLINKS, Linux 5.6), and every change of a name
// is made relative to a folder opened that way. A link that the host plants on a path, or a
// sub-folder it swaps for one, fails the operation with ErrLink instead of leading elsewhere.
// The filesystems that serve host folders to the workload (encfs, trustfs) reach the host
// through it, the sandbox builds the workload's view (which binds host folders) through it, and
// pf rekey rewrites a host folder through it.
//
// Paths are slash-separated and relative to the folder, "" being the folder itself.
package hostdir

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// ErrLink is the failure of a path that leads through a symbolic link or out of the folder.
var ErrLink = errors.New("a symbolic link or a way out of the host folder on the path, which is not followed")

// Root is a host folder, held open.
type Root struct {
	path string // the folder's absolute path, for messages
	fd   int    // the folder, opened O_PATH
}

// Open opens the host folder at path, an absolute path, following links in it.
func Open(path string) (*Root, error) {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return &Root{path: path, fd: fd}, nil
}

// OpenRoot opens the folder rel as a Root of its own.
func (r *Root) OpenRoot(rel string) (*Root, error) {
	fd, err := r.OpenFD(rel, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, err
	}
	return &Root{path: r.Name(rel), fd: fd}, nil
}

// Close closes the folder.
func (r *Root) Close() { unix.Close(r.fd) }

// Name returns the host path of rel, for messages only.
func (r *Root) Name(rel string) string { return filepath.Join(r.path, filepath.FromSlash(rel)) }

// OpenFD opens rel with flags, creating it with mode where flags say so. With O_NOFOLLOW a link
// at the end of the path fails too; with O_PATH|O_NOFOLLOW it is the link that opens.
func (r *Root) OpenFD(rel string, flags int, mode uint32) (int, error) {
	if flags&(unix.O_CREAT|unix.O_TMPFILE) == 0 {
		mode = 0 // openat2 refuses a mode it does not use
	}
	p := rel
	if p == "" {
		p = "."
	}
	how := unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC), Mode: uint64(mode),
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS}
	fd, err := unix.Openat2(r.fd, p, &how)
	if err == unix.ELOOP || err == unix.EXDEV {
		err = ErrLink
	}
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: r.Name(rel), Err: err}
	}
	return fd, nil
}

// OpenFile opens rel as OpenFD does.
func (r *Root) OpenFile(rel string, flags int, mode uint32) (*os.File, error) {
	fd, err := r.OpenFD(rel, flags, mode)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), r.Name(rel)), nil
}

// Stat returns the status of rel, or of the link itself if rel is a symbolic link.
func (r *Root) Stat(rel string, st *syscall.Stat_t) error {
	fd, err := r.OpenFD(rel, unix.O_PATH|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := syscall.Fstat(fd, st); err != nil {
		return &os.PathError{Op: "stat", Path: r.Name(rel), Err: err}
	}
	return nil
}

// Statfs returns the status of the folder's filesystem.
func (r *Root) Statfs(st *syscall.Statfs_t) error { return syscall.Fstatfs(r.fd, st) }

// Readlink returns the target of the symbolic link rel.
func (r *Root) Readlink(rel string) ([]byte, error) {
	fd, err := r.OpenFD(rel, unix.O_PATH|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(fd, "", buf)
	if err != nil {
		return nil, &os.PathError{Op: "readlink", Path: r.Name(rel), Err: err}
	}
	return buf[:n], nil
}

// ReadDir returns the entries of the folder rel, sorted by name.
func (r *Root) ReadDir(rel string) ([]os.DirEntry, error) {
	d, err := r.OpenFile(rel, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	entries, err := d.ReadDir(-1)
	slices.SortFunc(entries, func(a, b os.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return entries, err
}

// parent opens the folder of rel, for a change of the entry base in it; the caller closes it.
func (r *Root) parent(rel string) (fd int, base string, err error) {
	dir, base := Dir(rel), rel[strings.LastIndexByte(rel, '/')+1:]
	fd, err = r.OpenFD(dir, unix.O_PATH|unix.O_DIRECTORY, 0)
	return fd, base, err
}

// Mkdir makes the folder rel.
func (r *Root) Mkdir(rel string, mode uint32) error {
	dfd, base, err := r.parent(rel)
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	if err := unix.Mkdirat(dfd, base, mode); err != nil {
		return &os.PathError{Op: "mkdir", Path: r.Name(rel), Err: err}
	}
	return nil
}

// Symlink makes rel a symbolic link to target.
func (r *Root) Symlink(target, rel string) error {
	dfd, base, err := r.parent(rel)
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	if err := unix.Symlinkat(target, dfd, base); err != nil {
		return &os.LinkError{Op: "symlink", Old: target, New: r.Name(rel), Err: err}
	}
	return nil
}

// Remove removes rel: a folder with unix.AT_REMOVEDIR, anything else without.
func (r *Root) Remove(rel string, flags int) error {
	dfd, base, err := r.parent(rel)
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	if err := unix.Unlinkat(dfd, base, flags); err != nil {
		return &os.PathError{Op: "remove", Path: r.Name(rel), Err: err}
	}
	return nil
}

// Rename renames from to to, as renameat2 with flags does.
func (r *Root) Rename(from, to string, flags uint) error {
	ffd, fbase, err := r.parent(from)
	if err != nil {
		return err
	}
	defer unix.Close(ffd)
	tfd, tbase, err := r.parent(to)
	if err != nil {
		return err
	}
	defer unix.Close(tfd)
	if err := unix.Renameat2(ffd, fbase, tfd, tbase, flags); err != nil {
		return &os.LinkError{Op: "rename", Old: r.Name(from), New: r.Name(to), Err: err}
	}
	return nil
}

// SyncDir makes the changes of names in the folder rel durable.
func (r *Root) SyncDir(rel string) error {
	fd, err := r.OpenFD(rel, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Fsync(fd)
}

// Dir returns the folder of rel, "" for the host folder itself.
func Dir(rel string) string {
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		return rel[:i]
	}
	return ""
}

// Join returns the path of name in the folder dir.
func Join(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}
