package encfs

import (
	"os"
	"syscall"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/ppml/ppml/internal/hostdir"
)

// setAttr applies the permission bits and times in in to the host file or folder rel of root.
func setAttr(root *hostdir.Root, rel string, in *fuse.SetAttrIn) error {
	// Opened, as fchmodat cannot refuse to follow a link before Linux 6.6.
	fd, err := root.OpenFD(rel, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := setHostAttr(fd, in); err != nil {
		return &os.PathError{Op: "setattr", Path: root.Name(rel), Err: err}
	}
	return nil
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
