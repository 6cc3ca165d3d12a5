package encfs

import (
	"context"
	"os"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/ppml/ppml/pf"
)

// fileNode is a protected file of the mount. While it is open, all its handles share its
// content, an openFile.
type fileNode struct {
	gofs.Inode
	fsys *fsys

	gone bool // the file was unlinked or replaced; guarded by fsys.ns

	mu    sync.Mutex // guards the fields below
	open  *openFile  // the content while the file is open
	users int        // the open handles, and internal users, of open
	// The plaintext size of the host file with identity id, as last seen (0 if it does not
	// open).
	id   hostID
	size int64
}

// handle is an open file description; its file stays open while it does.
type handle struct {
	file  *openFile
	write bool
}

// hostID tells whether a host file changed since it was last read.
type hostID struct {
	dev, ino     uint64
	size         int64
	mtime, ctime syscall.Timespec
}

func idOf(st *syscall.Stat_t) hostID {
	return hostID{dev: st.Dev, ino: st.Ino, size: st.Size, mtime: st.Mtim, ctime: st.Ctim}
}

var (
	_ gofs.NodeOpener    = (*fileNode)(nil)
	_ gofs.NodeGetattrer = (*fileNode)(nil)
	_ gofs.NodeSetattrer = (*fileNode)(nil)
	_ gofs.NodeReader    = (*fileNode)(nil)
	_ gofs.NodeWriter    = (*fileNode)(nil)
	_ gofs.NodeFlusher   = (*fileNode)(nil)
	_ gofs.NodeFsyncer   = (*fileNode)(nil)
	_ gofs.NodeReleaser  = (*fileNode)(nil)
)

// where returns the file's path inside the mount, or false if it was removed. ns must be held.
func (n *fileNode) where() (rel string, ok bool) {
	if rel, ok = relPath(n.EmbeddedInode()); !ok || n.gone {
		return "", false
	}
	return rel, true
}

// attr fills out from st, the status of the host file at rel, with the plaintext size. n.mu
// must be held.
func (n *fileNode) attr(rel string, st *syscall.Stat_t, out *fuse.Attr) {
	if f := n.open; f != nil {
		f.mu.RLock()
		defer f.mu.RUnlock()
		f.attr(st, out)
		return
	}
	hostAttr(st, out)
	if id := idOf(st); id != n.id {
		n.load(rel, id)
	}
	out.Size = uint64(n.size)
}

// hostAttr fills out from st, a host file's status; the caller sets the plaintext size.
func hostAttr(st *syscall.Stat_t, out *fuse.Attr) {
	out.FromStat(st)
	out.Ino = 0                    // go-fuse numbers the nodes
	out.Blksize, out.Blocks = 0, 0 // computed from the plaintext size
}

// load reads the plaintext size of the closed host file at rel, whose identity is id. A host
// file that does not open reads as empty; opening it fails.
func (n *fileNode) load(rel string, id hostID) {
	n.id, n.size = id, 0
	hf, err := n.fsys.root.OpenFile(rel, os.O_RDONLY, 0)
	if err != nil {
		return
	}
	defer hf.Close()
	p, err := pf.Open(hf, id.size, n.fsys.kdk(), &pf.Options{CheckPath: true, Path: n.fsys.boundPath(rel)})
	if err != nil {
		return
	}
	n.size = p.Size()
	p.Close()
}

func (n *fileNode) Getattr(ctx context.Context, _ gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.fsys.ns.RLock()
	defer n.fsys.ns.RUnlock()
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.getattr(out)
}

// getattr fills out; ns and n.mu must be held.
func (n *fileNode) getattr(out *fuse.AttrOut) syscall.Errno {
	var st syscall.Stat_t
	if f := n.open; f != nil {
		f.mu.RLock()
		defer f.mu.RUnlock()
		if err := syscall.Fstat(int(f.host.Fd()), &st); err != nil {
			return gofs.ToErrno(err)
		}
		f.attr(&st, &out.Attr)
		return 0
	}
	rel, ok := n.where()
	if !ok {
		return syscall.ENOENT
	}
	if err := n.fsys.root.Stat(rel, &st); err != nil {
		return n.fsys.hostErrno(rel, "stat", err)
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return syscall.ENOENT // no longer a file: a link, say, which is not served
	}
	n.attr(rel, &st, &out.Attr)
	return 0
}

func (n *fileNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	write := flags&syscall.O_ACCMODE != syscall.O_RDONLY
	if write && n.fsys.ro {
		return nil, 0, syscall.EROFS
	}
	n.fsys.ns.RLock()
	defer n.fsys.ns.RUnlock()
	n.mu.Lock()
	defer n.mu.Unlock()
	f, keep, errno := n.acquire()
	if errno != 0 {
		return nil, 0, errno
	}
	var fuseFlags uint32
	if keep {
		fuseFlags = fuse.FOPEN_KEEP_CACHE
	}
	return &handle{file: f, write: write}, fuseFlags, 0
}

// acquire opens the file's content for one more user and returns it. keep reports that the host
// file is the one last served, so that the kernel may keep the plaintext it has cached. ns and
// n.mu must be held.
func (n *fileNode) acquire() (f *openFile, keep bool, errno syscall.Errno) {
	if n.open != nil {
		n.users++
		return n.open, true, 0
	}
	rel, ok := n.where()
	if !ok {
		return nil, false, syscall.ENOENT
	}
	hf, err := n.fsys.root.OpenFile(rel, os.O_RDONLY, 0)
	if err != nil {
		return nil, false, n.fsys.hostErrno(rel, "open", err)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(hf.Fd()), &st); err != nil {
		hf.Close()
		return nil, false, gofs.ToErrno(err)
	}
	id, bound := idOf(&st), n.fsys.boundPath(rel)
	keep = id == n.id
	p, err := pf.Open(hf, st.Size, n.fsys.kdk(), &pf.Options{CheckPath: true, Path: bound})
	if err != nil {
		hf.Close()
		n.id, n.size = id, 0
		return nil, false, n.fsys.errno(n.fsys.root.Name(rel), "open", err)
	}
	n.id, n.size = id, p.Size()
	return n.opened(p, hf, hostSeen{id: id, header: p.Header(), path: bound}), keep, 0
}

// opened makes p, over the host file hf, which is as seen, the content of the newly opened file,
// with one user.
func (n *fileNode) opened(p *pf.File, hf *os.File, seen hostSeen) *openFile {
	n.open, n.users = newOpenFile(n, p, hf, seen), 1
	return n.open
}

func (n *fileNode) Read(ctx context.Context, fh gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	f := fh.(*handle).file
	f.mu.RLock()
	res, err := f.read(dest, off)
	f.mu.RUnlock()
	if err != nil {
		n.fsys.ns.RLock()
		defer n.fsys.ns.RUnlock()
		f.mu.Lock()
		defer f.mu.Unlock()
		return nil, f.fail("read", err)
	}
	return res, 0
}

func (n *fileNode) Write(ctx context.Context, fh gofs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	f := fh.(*handle).file
	n.fsys.ns.RLock()
	defer n.fsys.ns.RUnlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.change(false); err != nil {
		return 0, f.fail("write", err)
	}
	got, err := f.pf.WriteAt(data, off)
	f.mtime = time.Now()
	if err != nil {
		return uint32(got), f.fail("write", err)
	}
	return uint32(got), 0
}

func (n *fileNode) Flush(ctx context.Context, fh gofs.FileHandle) syscall.Errno {
	if h := fh.(*handle); h.write {
		return n.sync(h.file, "close")
	}
	return 0
}

func (n *fileNode) Fsync(ctx context.Context, fh gofs.FileHandle, flags uint32) syscall.Errno {
	return n.sync(fh.(*handle).file, "fsync")
}

// sync commits the changes made so far to f.
func (n *fileNode) sync(f *openFile, op string) syscall.Errno {
	n.fsys.ns.RLock()
	defer n.fsys.ns.RUnlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.commit(); err != nil {
		return f.fail(op, err)
	}
	return 0
}

func (n *fileNode) Release(ctx context.Context, _ gofs.FileHandle) syscall.Errno {
	n.fsys.ns.RLock()
	defer n.fsys.ns.RUnlock()
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.release()
}

// release ends a use of the content; the last one commits the changes (made through a shared
// memory map after the last close, say) and closes the content. ns and n.mu must be held.
func (n *fileNode) release() syscall.Errno {
	n.users--
	if n.users > 0 {
		return 0
	}
	f := n.open
	n.open = nil
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.close()
}

// removed records that the file's name is gone: its content stays readable and writable
// through the open handles but is never committed. dir is the folder it was in. ns must be held
// exclusively.
func (n *fileNode) removed(dir string) {
	n.gone = true
	n.mu.Lock()
	defer n.mu.Unlock()
	if f := n.open; f != nil {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.removed(dir)
	}
}

// moved moves the file's private copy, if any, from the folder from to the folder to, following
// the file. ns must be held exclusively.
func (n *fileNode) moved(from, to string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if f := n.open; f != nil {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.moved(from, to)
	}
	return nil
}

// rebound notes that encfs bound the host file to the path to (see openFile.rebound). ns must
// be held exclusively.
func (n *fileNode) rebound(hf *os.File, was, now pf.Header, to string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if f := n.open; f != nil {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.rebound(hf, was, now, to)
	}
}

func (n *fileNode) Setattr(ctx context.Context, _ gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if n.fsys.ro {
		return syscall.EROFS
	}
	if errno := setattrAllowed(in, false); errno != 0 {
		return errno
	}
	n.fsys.ns.RLock()
	defer n.fsys.ns.RUnlock()
	n.mu.Lock()
	defer n.mu.Unlock()
	rel, named := n.where()
	if size, ok := in.GetSize(); ok {
		if errno := n.truncate(int64(size)); errno != 0 {
			return errno
		}
	}
	var err error
	if f := n.open; f != nil {
		f.mu.Lock()
		err = f.setAttr(rel, named, in)
		f.mu.Unlock()
	} else if named {
		err = setAttr(n.fsys.root, rel, in)
	}
	if err != nil {
		return n.fsys.hostErrno(rel, "setattr", err)
	}
	return n.getattr(out)
}

// truncate sets the plaintext size; a file that is not open is committed at once. ns and n.mu
// must be held.
func (n *fileNode) truncate(size int64) syscall.Errno {
	f, _, errno := n.acquire()
	if errno != 0 {
		return errno
	}
	f.mu.Lock()
	err := f.change(size == 0)
	if err == nil {
		err = f.pf.Truncate(size)
		f.mtime = time.Now()
	}
	if err != nil {
		errno = f.fail("truncate", err)
	}
	f.mu.Unlock()
	if e := n.release(); errno == 0 {
		errno = e
	}
	return errno
}
