package encfs

import (
	"context"
	"errors"
	"os"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/ppml/ppml/internal/hostdir"
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

// rel returns the folder's path inside the mount; ns must be held.
func (d *dirNode) rel() (string, syscall.Errno) {
	rel, ok := relPath(d.EmbeddedInode())
	if !ok {
		return "", syscall.ENOENT
	}
	return rel, 0
}

// hidden reports whether the entry name of d is not served (Options.Names).
func (d *dirNode) hidden(name string) bool {
	return d.fsys.names != nil && d.IsRoot() && !d.fsys.names[name]
}

// child returns the path inside the mount of the entry name; ns must be held.
func (d *dirNode) child(name string) (string, syscall.Errno) {
	if isTemp(name) || d.hidden(name) {
		return "", syscall.ENOENT
	}
	dir, errno := d.rel()
	return hostdir.Join(dir, name), errno
}

func (d *dirNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	d.fsys.ns.RLock()
	defer d.fsys.ns.RUnlock()
	rel, errno := d.child(name)
	if errno != 0 {
		return nil, errno
	}
	var st syscall.Stat_t
	if err := d.fsys.root.Stat(rel, &st); err != nil {
		return nil, d.fsys.hostErrno(rel, "lookup", err)
	}
	mode := st.Mode & syscall.S_IFMT
	if mode != syscall.S_IFDIR && mode != syscall.S_IFREG {
		return nil, syscall.ENOENT // only folders and protected files are served, never links
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
	rel, errno := d.rel()
	if errno != 0 {
		return errno
	}
	return d.getattr(rel, &out.Attr)
}

// getattr fills out with the status of the host folder rel; ns must be held.
func (d *dirNode) getattr(rel string, out *fuse.Attr) syscall.Errno {
	var st syscall.Stat_t
	if err := d.fsys.root.Stat(rel, &st); err != nil {
		return d.fsys.hostErrno(rel, "stat", err)
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		return syscall.ENOENT // no longer a folder: a link, say, which is not served
	}
	dirAttr(&st, out)
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
	if errno := setattrAllowed(in, d.IsRoot()); errno != 0 {
		return errno
	}
	d.fsys.ns.RLock()
	defer d.fsys.ns.RUnlock()
	rel, errno := d.rel()
	if errno != 0 {
		return errno
	}
	if err := setAttr(d.fsys.root, rel, in); err != nil {
		return d.fsys.hostErrno(rel, "setattr", err)
	}
	return d.getattr(rel, &out.Attr)
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
	rel, errno := d.rel()
	if errno != 0 {
		return nil, errno
	}
	entries, err := d.fsys.root.ReadDir(rel)
	if err != nil {
		return nil, d.fsys.hostErrno(rel, "readdir", err)
	}
	list := make([]fuse.DirEntry, 0, len(entries))
	for _, e := range entries {
		switch {
		case isTemp(e.Name()):
			d.fsys.removeStale(rel, e.Name())
		case d.hidden(e.Name()):
		case e.Type().IsRegular():
			list = append(list, fuse.DirEntry{Name: e.Name(), Mode: syscall.S_IFREG})
		case e.IsDir():
			list = append(list, fuse.DirEntry{Name: e.Name(), Mode: syscall.S_IFDIR})
		}
	}
	return gofs.NewListDirStream(list), 0
}

// removeStale removes the temporary file name in the folder dir unless it is in use: it is then
// a left-over of a crash (ciphertext only).
func (s *fsys) removeStale(dir, name string) {
	if s.ro || s.liveTemp(name) {
		return
	}
	rel := hostdir.Join(dir, name)
	if err := s.root.Remove(rel, 0); err == nil {
		s.log.Info("encfs: removed a temporary file left by an earlier run", "file", s.root.Name(rel))
	}
}

func (d *dirNode) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	if d.fsys.ro {
		return nil, nil, 0, syscall.EROFS
	}
	if isTemp(name) {
		return nil, nil, 0, syscall.EPERM
	}
	if d.hidden(name) {
		return nil, nil, 0, syscall.EACCES
	}
	d.fsys.ns.RLock()
	defer d.fsys.ns.RUnlock()
	rel, errno := d.child(name)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	// Like Gramine, the host file is readable and writable by its owner whatever the mode.
	hf, err := d.fsys.root.OpenFile(rel, os.O_RDWR|os.O_CREATE|os.O_EXCL, mode&0777|0600)
	if err != nil {
		return nil, nil, 0, d.fsys.hostErrno(rel, "create", err)
	}
	// An empty protected file takes the name at once; writes go to a temporary copy.
	bound := d.fsys.boundPath(rel)
	f, err := pf.Create(hf, d.fsys.kdk(), bound, nil)
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
		d.fsys.root.Remove(rel, 0)
		return nil, nil, 0, d.fsys.errno(d.fsys.root.Name(rel), "create", err)
	}
	n := &fileNode{fsys: d.fsys}
	file := n.opened(f, hf, hostSeen{id: idOf(&st), header: f.Header(), path: bound})
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
	if d.hidden(name) {
		return nil, syscall.EACCES
	}
	d.fsys.ns.RLock()
	defer d.fsys.ns.RUnlock()
	rel, errno := d.child(name)
	if errno != 0 {
		return nil, errno
	}
	if err := d.fsys.root.Mkdir(rel, mode&0777); err != nil {
		return nil, d.fsys.hostErrno(rel, "mkdir", err)
	}
	if errno := d.getattr(rel, &out.Attr); errno != 0 {
		return nil, errno
	}
	return d.NewInode(ctx, &dirNode{fsys: d.fsys}, gofs.StableAttr{Mode: syscall.S_IFDIR}), 0
}

func (d *dirNode) Unlink(ctx context.Context, name string) syscall.Errno {
	if d.fsys.ro {
		return syscall.EROFS
	}
	d.fsys.ns.Lock() // it takes a file's name away
	defer d.fsys.ns.Unlock()
	rel, errno := d.child(name)
	if errno != 0 {
		return errno
	}
	// Unlinking works whatever the file holds, even when it is not a protected file.
	if err := d.fsys.root.Remove(rel, 0); err != nil {
		return d.fsys.hostErrno(rel, "unlink", err)
	}
	if n, ok := d.childFile(name); ok {
		n.removed(hostdir.Dir(rel))
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
	rel, errno := d.child(name)
	if errno != 0 {
		return errno
	}
	err := d.fsys.root.Remove(rel, unix.AT_REMOVEDIR)
	if errors.Is(err, syscall.ENOTEMPTY) {
		// Left-over temporary files are not shown, so they must not keep the folder alive.
		if entries, rerr := d.fsys.root.ReadDir(rel); rerr == nil {
			for _, e := range entries {
				if isTemp(e.Name()) {
					d.fsys.removeStale(rel, e.Name())
				}
			}
			err = d.fsys.root.Remove(rel, unix.AT_REMOVEDIR)
		}
	}
	if err != nil {
		return d.fsys.hostErrno(rel, "rmdir", err)
	}
	return 0
}

func (d *dirNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	var st syscall.Statfs_t
	if err := d.fsys.root.Statfs(&st); err != nil {
		return gofs.ToErrno(err)
	}
	out.FromStatfsT(&st)
	return 0
}
