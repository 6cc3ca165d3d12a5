package trustfs

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// hostRoot is the host folder that a filesystem serves files of, held open. Every host path is
// resolved beneath it without following a symbolic link (openat2 with RESOLVE_BENEATH and
// RESOLVE_NO_SYMLINKS, Linux 5.6), as package encfs resolves its own: a link that the host
// plants on the path of a file, or a folder it swaps for one, fails the lookup with errLink
// instead of leading elsewhere.
//
// Paths are slash-separated and relative to the folder, "" being the folder itself.
type hostRoot struct {
	path string // the folder's absolute path, for messages
	fd   int    // the folder, opened O_PATH
}

// errLink is the failure of a host path that leads through a symbolic link or out of the host
// folder.
var errLink = errors.New("a symbolic link or a way out of the host folder on the path; trustfs does not follow it")

// openRoot opens the host folder at path, an absolute path, following links in it.
func openRoot(path string) (*hostRoot, error) {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return &hostRoot{path: path, fd: fd}, nil
}

func (r *hostRoot) close() { unix.Close(r.fd) }

// name returns the host path of rel, for messages only.
func (r *hostRoot) name(rel string) string { return filepath.Join(r.path, filepath.FromSlash(rel)) }

// openFD opens rel with flags. With O_NOFOLLOW a link at the end of the path fails too; with
// O_PATH|O_NOFOLLOW it is the link that opens.
func (r *hostRoot) openFD(rel string, flags int) (int, error) {
	p := rel
	if p == "" {
		p = "."
	}
	how := unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC), Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS}
	fd, err := unix.Openat2(r.fd, p, &how)
	if err == unix.ELOOP || err == unix.EXDEV {
		err = errLink
	}
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: r.name(rel), Err: err}
	}
	return fd, nil
}

// open opens the file rel for reading. Opening never blocks, nor makes a terminal the
// caller's, whatever the host put there; the caller checks what opened.
func (r *hostRoot) open(rel string) (*os.File, error) {
	fd, err := r.openFD(rel, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), r.name(rel)), nil
}

// stat returns the status of rel, or of the link itself if rel is a symbolic link.
func (r *hostRoot) stat(rel string, st *syscall.Stat_t) error {
	fd, err := r.openFD(rel, unix.O_PATH|unix.O_NOFOLLOW)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := syscall.Fstat(fd, st); err != nil {
		return &os.PathError{Op: "stat", Path: r.name(rel), Err: err}
	}
	return nil
}

// readlink returns the target of the symbolic link rel.
func (r *hostRoot) readlink(rel string) ([]byte, error) {
	fd, err := r.openFD(rel, unix.O_PATH|unix.O_NOFOLLOW)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(fd, "", buf)
	if err != nil {
		return nil, &os.PathError{Op: "readlink", Path: r.name(rel), Err: err}
	}
	return buf[:n], nil
}

// readDir returns the entries of the folder rel, sorted by name.
func (r *hostRoot) readDir(rel string) ([]os.DirEntry, error) {
	fd, err := r.openFD(rel, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return nil, err
	}
	d := os.NewFile(uintptr(fd), r.name(rel))
	defer d.Close()
	entries, err := d.ReadDir(-1)
	slices.SortFunc(entries, func(a, b os.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return entries, err
}

// joinRel returns the path of name in the folder dir.
func joinRel(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}
