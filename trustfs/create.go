package trustfs

import (
	"context"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// A filesystem with Creatable entries is mounted writable, since the kernel refuses every
// change of a read-only one; trustfs then refuses itself every change but these: the creation
// of a Creatable entry's host file, and the writes of that file.

// creatable reports whether the filesystem of entries has a Creatable entry.
func creatable(entries []Entry) bool {
	for _, e := range entries {
		if e.Kind == Creatable {
			return true
		}
	}
	return false
}

var (
	_ gofs.NodeCreater  = (*dirNode)(nil)
	_ gofs.NodeUnlinker = (*dirNode)(nil)
	_ gofs.NodeRmdirer  = (*dirNode)(nil)
)

// Create makes the host file of the Creatable entry name of d, which must not exist yet,
// beneath the host folder and without following a link, owned by Options.Owner, and opens it.
// Any other name is EACCES.
func (d *dirNode) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	t := d.tree.childOf(name)
	if t == nil || t.entry == nil || t.entry.Kind != Creatable {
		return nil, nil, 0, syscall.EACCES
	}
	s, host := d.fsys, t.entry.Host
	fd, err := s.root.OpenFD(host, int(flags)&^unix.O_ACCMODE|unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW, mode&0o777)
	if err != nil {
		return nil, nil, 0, s.hostErrno(host, "create", err)
	}
	if err := unix.Fchown(fd, int(s.owner.UID), int(s.owner.GID)); err != nil {
		unix.Close(fd)
		s.root.Remove(host, 0)
		return nil, nil, 0, s.hostErrno(host, "chown", err)
	}
	s.log.Info("trustfs: an allowed file was created", "file", s.root.Name(host))
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, nil, 0, errnoOf(err)
	}
	hostAttr(&st, &out.Attr)
	ch := d.NewInode(ctx, &hostFile{fsys: s, host: host, writable: true}, gofs.StableAttr{Mode: syscall.S_IFREG})
	return ch, gofs.NewLoopbackFile(fd), 0, 0
}

// Unlink refuses: nothing that the filesystem serves may go.
func (d *dirNode) Unlink(ctx context.Context, name string) syscall.Errno { return syscall.EROFS }

// Rmdir refuses: nothing that the filesystem serves may go.
func (d *dirNode) Rmdir(ctx context.Context, name string) syscall.Errno { return syscall.EROFS }

// childOf returns the tree's child name of t, nil if there is none.
func (t *tree) childOf(name string) *tree {
	if t == nil {
		return nil
	}
	return t.children[name]
}

var _ gofs.NodeSetattrer = (*hostFile)(nil)

// Setattr changes the size of a writable file only (a truncation); the rest is the host's.
func (n *hostFile) Setattr(ctx context.Context, f gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if !n.writable || in.Valid&^(fuse.FATTR_SIZE|fuse.FATTR_FH|fuse.FATTR_LOCKOWNER|fuse.FATTR_ATIME|fuse.FATTR_MTIME|fuse.FATTR_ATIME_NOW|fuse.FATTR_MTIME_NOW|fuse.FATTR_CTIME) != 0 {
		return syscall.EPERM
	}
	if size, ok := in.GetSize(); ok {
		file, err := n.fsys.root.OpenFile(n.host, unix.O_WRONLY|unix.O_NOFOLLOW, 0)
		if err != nil {
			return n.fsys.hostErrno(n.host, "open", err)
		}
		err = file.Truncate(int64(size))
		file.Close()
		if err != nil {
			return errnoOf(err)
		}
	}
	return n.Getattr(ctx, f, out)
}

// openWritable opens the writable host file of n with flags.
func (n *hostFile) openWritable(flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	fd, err := n.fsys.root.OpenFD(n.host, int(flags)&^(unix.O_CREAT|unix.O_EXCL)|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, 0, n.fsys.hostErrno(n.host, "open", err)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		unix.Close(fd)
		return nil, 0, syscall.ENOENT // no longer a file
	}
	// No FOPEN_KEEP_CACHE: each open sees what the host holds then.
	return gofs.NewLoopbackFile(fd), 0, 0
}

// Owner is the user and group that own the host files of Creatable entries once made.
type Owner struct{ UID, GID uint32 }

// ownerOf returns the owner of the host files that the filesystem makes: opts', or root.
func ownerOf(opts Options) Owner {
	if opts.Owner == nil {
		return Owner{}
	}
	return *opts.Owner
}
