package encfs

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/ppml/ppml/pf"
)

// dirNode is a folder of the mount, backed by the host folder at the same relative path.
type dirNode struct {
	gofs.Inode
	fsys *fsys
}

var (
	_ gofs.NodeLookuper  = (*dirNode)(nil)
	_ gofs.NodeGetattrer = (*dirNode)(nil)
	_ gofs.NodeSetattrer = (*dirNode)(nil)
	_ gofs.NodeReaddirer = (*dirNode)(nil)
	_ gofs.NodeCreater   = (*dirNode)(nil)
	_ gofs.NodeMkdirer   = (*dirNode)(nil)
	_ gofs.NodeUnlinker  = (*dirNode)(nil)
	_ gofs.NodeRmdirer   = (*dirNode)(nil)
	_ gofs.NodeStatfser  = (*dirNode)(nil)
)

// path returns the folder's host path; ns must be held.
func (d *dirNode) path() (string, syscall.Errno) {
	rel, ok := relPath(d.EmbeddedInode())
	if !ok {
		return "", syscall.ENOENT
	}
	return d.fsys.hostPath(rel), 0
}

// child returns the host path and the path inside the mount of the entry name; ns must be held.
func (d *dirNode) child(name string) (host, rel string, errno syscall.Errno) {
	if isTemp(name) {
		return "", "", syscall.ENOENT
	}
	dir, ok := relPath(d.EmbeddedInode())
	if !ok {
		return "", "", syscall.ENOENT
	}
	rel = name
	if dir != "" {
		rel = dir + "/" + name
	}
	return d.fsys.hostPath(rel), rel, 0
}

func (d *dirNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	d.fsys.ns.RLock()
	defer d.fsys.ns.RUnlock()
	host, rel, errno := d.child(name)
	if errno != 0 {
		return nil, errno
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(host, &st); err != nil {
		return nil, gofs.ToErrno(err)
	}
	mode := st.Mode & syscall.S_IFMT
	if mode != syscall.S_IFDIR && mode != syscall.S_IFREG {
		return nil, syscall.ENOENT // only folders and protected files are served
	}
	ch := d.GetChild(name)
	if ch == nil || ch.Mode() != mode {
		var ops gofs.InodeEmbedder = &dirNode{fsys: d.fsys}
		if mode == syscall.S_IFREG {
			ops = &fileNode{fsys: d.fsys}
		}
		ch = d.NewInode(ctx, ops, gofs.StableAttr{Mode: mode})
	}
	if n, ok := ch.Operations().(*fileNode); ok {
		n.mu.Lock()
		n.attr(rel, &st, &out.Attr)
		n.mu.Unlock()
	} else {
		dirAttr(&st, &out.Attr)
	}
	return ch, 0
}

func (d *dirNode) Getattr(ctx context.Context, _ gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	d.fsys.ns.RLock()
	defer d.fsys.ns.RUnlock()
	host, errno := d.path()
	if errno != 0 {
		return errno
	}
	var st syscall.Stat_t
	if err := syscall.Stat(host, &st); err != nil {
		return gofs.ToErrno(err)
	}
	dirAttr(&st, &out.Attr)
	return 0
}

// dirAttr fills out from st, a host folder's status.
func dirAttr(st *syscall.Stat_t, out *fuse.Attr) {
	out.FromStat(st)
	out.Ino = 0 // go-fuse numbers the nodes
}

func (d *dirNode) Setattr(ctx context.Context, _ gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if d.fsys.ro {
		return syscall.EROFS
	}
	d.fsys.ns.RLock()
	defer d.fsys.ns.RUnlock()
	host, errno := d.path()
	if errno != 0 {
		return errno
	}
	if err := setHostAttr(host, in); err != nil {
		return gofs.ToErrno(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(host, &st); err != nil {
		return gofs.ToErrno(err)
	}
	dirAttr(&st, &out.Attr)
	return 0
}

// setHostAttr applies the mode, owner and times in in to the host file or folder at host.
func setHostAttr(host string, in *fuse.SetAttrIn) error {
	if mode, ok := in.GetMode(); ok {
		if err := syscall.Chmod(host, mode&07777); err != nil {
			return err
		}
	}
	uid, uok := in.GetUID()
	gid, gok := in.GetGID()
	if uok || gok {
		u, g := -1, -1
		if uok {
			u = int(uid)
		}
		if gok {
			g = int(gid)
		}
		if err := os.Lchown(host, u, g); err != nil {
			return err
		}
	}
	if ts, ok := timesOf(in); ok {
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, host, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
	}
	return nil
}

// timesOf returns the access and modification times that in sets, for utimensat.
func timesOf(in *fuse.SetAttrIn) ([]unix.Timespec, bool) {
	atime, aok := in.GetATime()
	mtime, mok := in.GetMTime()
	if !aok && !mok {
		return nil, false
	}
	ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_OMIT}}
	if aok {
		ts[0] = unix.NsecToTimespec(atime.UnixNano())
	}
	if mok {
		ts[1] = unix.NsecToTimespec(mtime.UnixNano())
	}
	return ts, true
}

func (d *dirNode) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	d.fsys.ns.RLock()
	defer d.fsys.ns.RUnlock()
	host, errno := d.path()
	if errno != 0 {
		return nil, errno
	}
	entries, err := os.ReadDir(host)
	if err != nil {
		return nil, gofs.ToErrno(err)
	}
	list := make([]fuse.DirEntry, 0, len(entries))
	for _, e := range entries {
		switch {
		case isTemp(e.Name()):
			d.fsys.removeStale(host, e.Name())
		case e.Type().IsRegular():
			list = append(list, fuse.DirEntry{Name: e.Name(), Mode: syscall.S_IFREG})
		case e.IsDir():
			list = append(list, fuse.DirEntry{Name: e.Name(), Mode: syscall.S_IFDIR})
		}
	}
	return gofs.NewListDirStream(list), 0
}

// removeStale removes the temporary file name in the host folder dir unless it is in use: it is
// then a left-over of a crash (ciphertext only).
func (s *fsys) removeStale(dir, name string) {
	if s.ro || s.liveTemp(name) {
		return
	}
	p := filepath.Join(dir, name)
	if err := os.Remove(p); err == nil {
		s.log.Info("encfs: removed a temporary file left by an earlier run", "file", p)
	}
}

func (d *dirNode) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	if d.fsys.ro {
		return nil, nil, 0, syscall.EROFS
	}
	if isTemp(name) {
		return nil, nil, 0, syscall.EPERM
	}
	d.fsys.ns.RLock()
	defer d.fsys.ns.RUnlock()
	host, rel, errno := d.child(name)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	// Like Gramine, the host file is readable and writable by its owner whatever the mode.
	hf, err := os.OpenFile(host, os.O_RDWR|os.O_CREATE|os.O_EXCL, fs.FileMode(mode&0777|0600))
	if err != nil {
		return nil, nil, 0, gofs.ToErrno(err)
	}
	// An empty protected file takes the name at once; writes go to a temporary copy.
	f, err := pf.Create(hf, d.fsys.kdk(), d.fsys.boundPath(rel), nil)
	if err == nil {
		err = f.Flush()
	}
	var st syscall.Stat_t
	if err == nil {
		err = syscall.Fstat(int(hf.Fd()), &st)
	}
	if err != nil {
		if f != nil {
			f.Close()
		}
		hf.Close()
		os.Remove(host)
		return nil, nil, 0, d.fsys.errno(host, "create", err)
	}
	n := &fileNode{fsys: d.fsys}
	file := n.opened(f, hf)
	n.attr(rel, &st, &out.Attr)
	ch := d.NewInode(ctx, n, gofs.StableAttr{Mode: syscall.S_IFREG})
	return ch, &handle{file: file, write: flags&syscall.O_ACCMODE != syscall.O_RDONLY}, 0, 0
}

func (d *dirNode) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if d.fsys.ro {
		return nil, syscall.EROFS
	}
	if isTemp(name) {
		return nil, syscall.EPERM
	}
	d.fsys.ns.RLock()
	defer d.fsys.ns.RUnlock()
	host, _, errno := d.child(name)
	if errno != 0 {
		return nil, errno
	}
	if err := os.Mkdir(host, fs.FileMode(mode&0777)); err != nil {
		return nil, gofs.ToErrno(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(host, &st); err != nil {
		return nil, gofs.ToErrno(err)
	}
	dirAttr(&st, &out.Attr)
	return d.NewInode(ctx, &dirNode{fsys: d.fsys}, gofs.StableAttr{Mode: syscall.S_IFDIR}), 0
}

func (d *dirNode) Unlink(ctx context.Context, name string) syscall.Errno {
	if d.fsys.ro {
		return syscall.EROFS
	}
	d.fsys.ns.Lock() // it takes a file's name away
	defer d.fsys.ns.Unlock()
	host, _, errno := d.child(name)
	if errno != 0 {
		return errno
	}
	// Unlinking works whatever the file holds, even when it is not a protected file.
	if err := syscall.Unlink(host); err != nil {
		return gofs.ToErrno(err)
	}
	if n, ok := d.childFile(name); ok {
		n.removed(filepath.Dir(host))
	}
	return 0
}

// childFile returns the node of the file name if the kernel knows it.
func (d *dirNode) childFile(name string) (*fileNode, bool) {
	ch := d.GetChild(name)
	if ch == nil {
		return nil, false
	}
	n, ok := ch.Operations().(*fileNode)
	return n, ok
}

func (d *dirNode) Rmdir(ctx context.Context, name string) syscall.Errno {
	if d.fsys.ro {
		return syscall.EROFS
	}
	d.fsys.ns.RLock()
	defer d.fsys.ns.RUnlock()
	host, _, errno := d.child(name)
	if errno != 0 {
		return errno
	}
	err := syscall.Rmdir(host)
	if errors.Is(err, syscall.ENOTEMPTY) {
		// Left-over temporary files are not shown, so they must not keep the folder alive.
		if entries, rerr := os.ReadDir(host); rerr == nil {
			for _, e := range entries {
				if isTemp(e.Name()) {
					d.fsys.removeStale(host, e.Name())
				}
			}
			err = syscall.Rmdir(host)
		}
	}
	return gofs.ToErrno(err)
}

func (d *dirNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	var st syscall.Statfs_t
	if err := syscall.Statfs(d.fsys.host, &st); err != nil {
		return gofs.ToErrno(err)
	}
	out.FromStatfsT(&st)
	return 0
}
