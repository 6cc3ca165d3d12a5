package encfs

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// hostRoot is a mount's host folder, held open. Every host path is resolved beneath it without
// following a symbolic link (openat2 with RESOLVE_BENEATH and RESOLVE_NO_SYMLINKS, Linux 5.6),
// and every change is made relative to a folder opened that way, so that a host that plants a
// link in its folder, or swaps a sub-folder for one, cannot lead encfs outside: the operation
// fails with errLink.
//
// Paths are slash-separated and relative to the folder, "" being the folder itself.
type hostRoot struct {
	path string // the folder's absolute path, for messages
	fd   int    // the folder, opened O_PATH
}

// errLink is the failure of a host path that leads through a symbolic link or out of the host
// folder.
var errLink = errors.New("a symbolic link or a way out of the host folder on the path; encfs does not follow it")

// resolveBeneath is how every host path is resolved.
const resolveBeneath = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

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

// openFD opens rel with flags, creating it with mode where flags say so.
func (r *hostRoot) openFD(rel string, flags int, mode uint32) (int, error) {
	if flags&(unix.O_CREAT|unix.O_TMPFILE) == 0 {
		mode = 0 // openat2 refuses a mode it does not use
	}
	p := rel
	if p == "" {
		p = "."
	}
	how := unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC), Mode: uint64(mode), Resolve: resolveBeneath}
	fd, err := unix.Openat2(r.fd, p, &how)
	if err == unix.ELOOP || err == unix.EXDEV {
		err = errLink
	}
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: r.name(rel), Err: err}
	}
	return fd, nil
}

// open opens rel as openFD does.
func (r *hostRoot) open(rel string, flags int, mode uint32) (*os.File, error) {
	fd, err := r.openFD(rel, flags, mode)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), r.name(rel)), nil
}

// parent opens the folder of rel, for a change of the entry base in it; the caller closes it.
func (r *hostRoot) parent(rel string) (fd int, base string, err error) {
	dir, base := dirOf(rel), rel[strings.LastIndexByte(rel, '/')+1:]
	fd, err = r.openFD(dir, unix.O_PATH|unix.O_DIRECTORY, 0)
	return fd, base, err
}

// stat returns the status of rel, or of the link itself if rel is a symbolic link.
func (r *hostRoot) stat(rel string, st *syscall.Stat_t) error {
	// With O_PATH|O_NOFOLLOW, openat2 opens a link at the end of the path, not what it names.
	fd, err := r.openFD(rel, unix.O_PATH|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := syscall.Fstat(fd, st); err != nil {
		return &os.PathError{Op: "stat", Path: r.name(rel), Err: err}
	}
	return nil
}

// mkdir makes the folder rel.
func (r *hostRoot) mkdir(rel string, mode uint32) error {
	dfd, base, err := r.parent(rel)
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	if err := unix.Mkdirat(dfd, base, mode); err != nil {
		return &os.PathError{Op: "mkdir", Path: r.name(rel), Err: err}
	}
	return nil
}

// remove removes rel: a folder with unix.AT_REMOVEDIR, anything else without.
func (r *hostRoot) remove(rel string, flags int) error {
	dfd, base, err := r.parent(rel)
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	if err := unix.Unlinkat(dfd, base, flags); err != nil {
		return &os.PathError{Op: "remove", Path: r.name(rel), Err: err}
	}
	return nil
}

// rename renames from to to, as renameat2 with flags does.
func (r *hostRoot) rename(from, to string, flags uint) error {
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
		return &os.LinkError{Op: "rename", Old: r.name(from), New: r.name(to), Err: err}
	}
	return nil
}

// readDir returns the entries of the folder rel, sorted by name.
func (r *hostRoot) readDir(rel string) ([]os.DirEntry, error) {
	d, err := r.open(rel, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	entries, err := d.ReadDir(-1)
	slices.SortFunc(entries, func(a, b os.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return entries, err
}

// syncDir makes the changes of names in the folder rel durable.
func (r *hostRoot) syncDir(rel string) error {
	fd, err := r.openFD(rel, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Fsync(fd)
}

// setAttr applies the permission bits and times in in to the host file or folder rel.
func (r *hostRoot) setAttr(rel string, in *fuse.SetAttrIn) error {
	// Opened, as fchmodat cannot refuse to follow a link before Linux 6.6.
	fd, err := r.openFD(rel, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := setHostAttr(fd, in); err != nil {
		return &os.PathError{Op: "setattr", Path: r.name(rel), Err: err}
	}
	return nil
}

// statfs returns the status of the host folder's filesystem.
func (r *hostRoot) statfs(st *syscall.Statfs_t) error {
	return syscall.Fstatfs(r.fd, st)
}

// setattrAllowed refuses, with EPERM, what encfs must not do on the host for the workload, since
// it acts there as root: change an owner (the workload may not chown, as no user without
// CAP_CHOWN may), set the set-user-ID, set-group-ID or sticky bit, or change the mode of the
// mount's host folder itself. The rest (permission bits, times, size) is the workload's to set.
func setattrAllowed(in *fuse.SetAttrIn, root bool) syscall.Errno {
	_, uid := in.GetUID()
	_, gid := in.GetGID()
	mode, chmod := in.GetMode()
	if uid || gid || chmod && (mode&07000 != 0 || root) {
		return syscall.EPERM
	}
	return 0
}

// setHostAttr applies the permission bits and times in in to the open host file or folder fd;
// setattrAllowed has refused the rest.
func setHostAttr(fd int, in *fuse.SetAttrIn) error {
	if mode, ok := in.GetMode(); ok {
		if err := unix.Fchmod(fd, mode&0777); err != nil {
			return err
		}
	}
	if ts, ok := timesOf(in); ok {
		return futimens(fd, ts)
	}
	return nil
}

// futimens sets the access and modification times of the open file fd (utimensat with no path).
func futimens(fd int, ts []unix.Timespec) error {
	if _, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0); e != 0 {
		return e
	}
	return nil
}

// dirOf returns the folder of rel, "" for the mount's root.
func dirOf(rel string) string {
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		return rel[:i]
	}
	return ""
}

// joinRel returns the path of name in the folder dir.
func joinRel(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}
