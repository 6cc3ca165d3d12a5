package encfs

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/ppml/ppml/pf"
)

// fileNode is a protected file of the mount.
//
// While the file is open, all its handles share one pf.File. It reads the host file itself
// until the first change; then it moves to a temporary copy of the host file, which commit
// renames over the host file when a writer closes the file, on fsync, and on the last release.
type fileNode struct {
	gofs.Inode
	fsys *fsys

	mu sync.RWMutex // held shared by reads, exclusively by everything else

	// The plaintext size of the host file with identity id, as last seen (0 if it does not
	// open).
	id   hostID
	size int64

	opens  int             // open handles, and internal users
	pf     *pf.File        // the content while opens > 0
	host   *os.File        // the host file under pf
	shadow bool            // host is a private copy, not the host file itself
	temp   string          // the copy's name in the file's host folder; "" once unlinked
	mtime  time.Time       // the last change while shadow is set
	times  []unix.Timespec // access and modification times to give the copy on commit
	gone   bool            // the file was unlinked or replaced

	logged string // the last failure logged, so that kernel retries log it once

	raMu   sync.Mutex
	ra     *readAhead // while the file is open and unchanged
	raNext int64      // where the last read ended: a read there looks sequential
}

// handle is an open file description.
type handle struct{ write bool }

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

// where returns the file's host path and its path inside the mount, or false if it was
// removed. ns must be held.
func (n *fileNode) where() (host, rel string, ok bool) {
	if rel, ok = relPath(n.EmbeddedInode()); !ok || n.gone {
		return "", "", false
	}
	return n.fsys.hostPath(rel), rel, true
}

// attr fills out from st, the host file's status, with the plaintext size. n.mu must be held
// exclusively.
func (n *fileNode) attr(rel string, st *syscall.Stat_t, out *fuse.Attr) {
	out.FromStat(st)
	out.Ino = 0                    // go-fuse numbers the nodes
	out.Blksize, out.Blocks = 0, 0 // computed from the plaintext size
	switch {
	case n.pf != nil:
		out.Size = uint64(n.pf.Size())
		if n.shadow {
			out.SetTimes(nil, &n.mtime, nil)
		}
	default:
		if id := idOf(st); id != n.id {
			n.load(rel, id)
		}
		out.Size = uint64(n.size)
	}
}

// load reads the plaintext size of the closed host file at rel, whose identity is id. A host
// file that does not open reads as empty; opening it fails.
func (n *fileNode) load(rel string, id hostID) {
	n.id, n.size = id, 0
	hf, err := os.Open(n.fsys.hostPath(rel))
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
	if n.pf != nil {
		if err := syscall.Fstat(int(n.host.Fd()), &st); err != nil {
			return gofs.ToErrno(err)
		}
		n.attr("", &st, &out.Attr)
		return 0
	}
	host, rel, ok := n.where()
	if !ok {
		return syscall.ENOENT
	}
	if err := syscall.Stat(host, &st); err != nil {
		return gofs.ToErrno(err)
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
	keep, errno := n.acquire()
	if errno != 0 {
		return nil, 0, errno
	}
	var fuseFlags uint32
	if keep {
		fuseFlags = fuse.FOPEN_KEEP_CACHE
	}
	return &handle{write: write}, fuseFlags, 0
}

// acquire opens the file's content for one more user. keep reports that the host file is the
// one last served, so that the kernel may keep the plaintext it has cached. ns and n.mu must be
// held.
func (n *fileNode) acquire() (keep bool, errno syscall.Errno) {
	if n.opens > 0 {
		n.opens++
		return true, 0
	}
	host, rel, ok := n.where()
	if !ok {
		return false, syscall.ENOENT
	}
	hf, err := os.Open(host)
	if err != nil {
		return false, gofs.ToErrno(err)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(hf.Fd()), &st); err != nil {
		hf.Close()
		return false, gofs.ToErrno(err)
	}
	id := idOf(&st)
	keep = id == n.id
	p, err := pf.Open(hf, st.Size, n.fsys.kdk(), &pf.Options{CheckPath: true, Path: n.fsys.boundPath(rel)})
	if err != nil {
		hf.Close()
		n.id, n.size = id, 0
		return false, n.fsys.errno(host, "open", err)
	}
	n.id, n.size = id, p.Size()
	n.openFile(p, hf)
	return keep, 0
}

// openFile makes p, over the host file hf, the content of the newly opened file.
func (n *fileNode) openFile(p *pf.File, hf *os.File) {
	n.opens, n.pf, n.host, n.shadow, n.logged = 1, p, hf, false, ""
}

func (n *fileNode) Read(ctx context.Context, _ gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	n.mu.RLock()
	if n.pf == nil {
		n.mu.RUnlock()
		return nil, syscall.EBADF
	}
	if ra := n.readAhead(off, len(dest)); ra != nil {
		if res, ok := ra.readAt(len(dest), off); ok {
			n.mu.RUnlock()
			return res, 0
		}
	}
	got, err := n.pf.ReadAt(dest, off)
	n.mu.RUnlock()
	if err != nil && err != io.EOF {
		return nil, n.fail("read", err)
	}
	return fuse.ReadResultData(dest[:got]), 0
}

// readAhead returns the file's read-ahead, if any, for a read of size bytes at off. In a large
// file that has not changed, a read that the read-ahead does not cover starts one at off, or
// starts it again there, if it is at the start or right after the previous read (sequential
// reads, wherever they began), and if the mount has a read-ahead to spare. n.mu must be held.
func (n *fileNode) readAhead(off int64, size int) *readAhead {
	n.raMu.Lock()
	defer n.raMu.Unlock()
	sequential := off == 0 || off == n.raNext
	n.raNext = off + int64(size)
	if !sequential || n.shadow || n.ra != nil && n.ra.covers(off) || n.pf.Size() < readAheadMin || off >= n.pf.Size() {
		return n.ra
	}
	token := false
	if n.ra != nil {
		token = n.ra.stop(true) // a token it still holds goes to the new one
		n.ra = nil
	}
	if !token {
		select {
		case n.fsys.readAheads <- struct{}{}:
		default:
			return nil
		}
	}
	n.ra = startReadAhead(n.pf, n.pf.Size(), off, n.fsys.readAheads)
	return n.ra
}

// stopReadAhead stops the read-ahead, if any. n.mu must be held exclusively.
func (n *fileNode) stopReadAhead() {
	n.raMu.Lock()
	defer n.raMu.Unlock()
	if n.ra != nil {
		n.ra.stop(false)
		n.ra = nil
	}
}

// fail logs err unless it was the last failure logged, and returns its errno. n.mu must not be
// held.
func (n *fileNode) fail(op string, err error) syscall.Errno {
	n.fsys.ns.RLock()
	defer n.fsys.ns.RUnlock()
	n.mu.Lock()
	defer n.mu.Unlock()
	host, _, ok := n.where()
	if !ok {
		host = "(unlinked)"
	}
	if err.Error() == n.logged {
		return errnoOf(err)
	}
	n.logged = err.Error()
	return n.fsys.errno(host, op, err)
}

func (n *fileNode) Write(ctx context.Context, _ gofs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	n.fsys.ns.RLock()
	defer n.fsys.ns.RUnlock()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.pf == nil {
		return 0, syscall.EBADF
	}
	if err := n.change(false); err != nil {
		return 0, n.failLocked("write", err)
	}
	got, err := n.pf.WriteAt(data, off)
	n.mtime = time.Now()
	if err != nil {
		return uint32(got), n.failLocked("write", err)
	}
	return uint32(got), 0
}

// failLocked is fail with ns and n.mu held.
func (n *fileNode) failLocked(op string, err error) syscall.Errno {
	host, _, ok := n.where()
	if !ok {
		host = "(unlinked)"
	}
	return n.fsys.errno(host, op, err)
}

// change prepares the content for a change: on the first change since the file was opened or
// last committed, it moves the content to a fresh temporary copy of the host file (an empty
// protected file if empty is set), so that the host file keeps its content until commit. ns
// and n.mu must be held.
func (n *fileNode) change(empty bool) error {
	if n.shadow {
		return nil
	}
	host, _, named := n.where()
	dir := n.fsys.host // an unlinked file's copy gets no name
	if named {
		dir = filepath.Dir(host)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(n.host.Fd()), &st); err != nil {
		return err
	}
	name := n.fsys.newTemp()
	path := filepath.Join(dir, name)
	tf, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, os.FileMode(st.Mode&0777))
	if err != nil {
		n.fsys.dropTemp(name)
		return err
	}
	// The copy replaces the host file: it keeps its owner where we may set it.
	if int(st.Uid) != os.Geteuid() || int(st.Gid) != os.Getegid() {
		tf.Chown(int(st.Uid), int(st.Gid))
	}
	p, err := n.copyTo(tf, st.Size, empty)
	if err != nil {
		tf.Close()
		os.Remove(path)
		n.fsys.dropTemp(name)
		return err
	}
	if !named {
		os.Remove(path)
		n.fsys.dropTemp(name)
		name = ""
	}
	n.stopReadAhead()
	n.pf.Close()
	n.host.Close()
	n.pf, n.host, n.shadow, n.temp, n.mtime = p, tf, true, name, time.Now()
	return nil
}

// copyTo copies the content to tf, a new host file, and returns it opened there.
func (n *fileNode) copyTo(tf *os.File, hostSize int64, empty bool) (*pf.File, error) {
	if empty {
		return pf.Create(tf, n.fsys.kdk(), n.pf.Path(), nil)
	}
	if _, err := n.host.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	// Both are *os.File: the kernel copies (copy_file_range), the bytes never come here.
	if _, err := io.CopyN(tf, n.host, hostSize); err != nil {
		return nil, err
	}
	// The copy was checked when the host file was opened.
	return pf.Open(tf, hostSize, n.fsys.kdk(), nil)
}

// commit makes the changes durable: it flushes the temporary copy, syncs it and renames it over
// the host file. ns and n.mu must be held.
func (n *fileNode) commit() error {
	if !n.shadow {
		return nil
	}
	host, rel, ok := n.where()
	if !ok {
		return nil // nothing to replace: the changes die with the last handle
	}
	temp := filepath.Join(filepath.Dir(host), n.temp)
	err := n.pf.SetPath(n.fsys.boundPath(rel))
	if err == nil {
		err = n.pf.Flush()
	}
	if err == nil && n.times != nil {
		err = unix.UtimesNanoAt(unix.AT_FDCWD, temp, n.times, 0)
	}
	if err == nil {
		err = n.host.Sync()
	}
	if err == nil {
		err = os.Rename(temp, host)
	}
	if err != nil {
		return err
	}
	n.fsys.dropTemp(n.temp)
	n.shadow, n.temp, n.times = false, "", nil
	if d, err := os.Open(filepath.Dir(host)); err == nil {
		d.Sync() // makes the rename durable
		d.Close()
	}
	return nil
}

func (n *fileNode) Flush(ctx context.Context, fh gofs.FileHandle) syscall.Errno {
	if h, ok := fh.(*handle); !ok || !h.write {
		return 0
	}
	return n.sync("close")
}

func (n *fileNode) Fsync(ctx context.Context, _ gofs.FileHandle, flags uint32) syscall.Errno {
	return n.sync("fsync")
}

// sync commits the changes made so far.
func (n *fileNode) sync(op string) syscall.Errno {
	n.fsys.ns.RLock()
	defer n.fsys.ns.RUnlock()
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.commit(); err != nil {
		return n.failLocked(op, err)
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
	n.opens--
	if n.opens > 0 {
		return 0
	}
	var errno syscall.Errno
	if err := n.commit(); err != nil {
		errno = n.failLocked("close", err)
	}
	if n.shadow && n.temp != "" { // the commit failed: the host file keeps its old content
		host, _, _ := n.where()
		os.Remove(filepath.Join(filepath.Dir(host), n.temp))
		n.fsys.dropTemp(n.temp)
	}
	var st syscall.Stat_t
	if !n.shadow && syscall.Fstat(int(n.host.Fd()), &st) == nil {
		n.id, n.size = idOf(&st), n.pf.Size()
	}
	n.stopReadAhead()
	n.pf.Close()
	n.host.Close()
	n.pf, n.host, n.shadow, n.temp, n.times = nil, nil, false, "", nil
	return errno
}

// removed records that the file's name is gone: its content stays readable and writable
// through the open handles but is never committed. dir is the host folder it was in.
func (n *fileNode) removed(dir string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.gone = true
	if n.temp != "" {
		os.Remove(filepath.Join(dir, n.temp))
		n.fsys.dropTemp(n.temp)
		n.temp = ""
	}
}

// moved moves the file's temporary copy, if any, from the host folder from to the host folder
// to, following the file.
func (n *fileNode) moved(from, to string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.temp == "" || from == to {
		return nil
	}
	return os.Rename(filepath.Join(from, n.temp), filepath.Join(to, n.temp))
}

func (n *fileNode) Setattr(ctx context.Context, _ gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if n.fsys.ro {
		return syscall.EROFS
	}
	n.fsys.ns.RLock()
	defer n.fsys.ns.RUnlock()
	n.mu.Lock()
	defer n.mu.Unlock()
	host, _, named := n.where()
	if size, ok := in.GetSize(); ok {
		if errno := n.truncate(int64(size)); errno != 0 {
			return errno
		}
	}
	if named {
		if err := setHostAttr(host, in); err != nil {
			return gofs.ToErrno(err)
		}
	}
	if n.temp != "" {
		// The copy replaces the host file on commit: give it the same mode and owner, and
		// the times after its last write.
		temp := filepath.Join(filepath.Dir(host), n.temp)
		if err := setHostAttr(temp, in); err != nil {
			return gofs.ToErrno(err)
		}
		if ts, ok := timesOf(in); ok {
			n.times = ts
			if mtime, ok := in.GetMTime(); ok {
				n.mtime = mtime
			}
		}
	}
	return n.getattr(out)
}

// truncate sets the plaintext size; a file that is not open is committed at once. ns and n.mu
// must be held.
func (n *fileNode) truncate(size int64) syscall.Errno {
	if _, errno := n.acquire(); errno != 0 {
		return errno
	}
	err := n.change(size == 0)
	if err == nil {
		err = n.pf.Truncate(size)
		n.mtime = time.Now()
	}
	errno := syscall.Errno(0)
	if err != nil {
		errno = n.failLocked("truncate", err)
	}
	if e := n.release(); errno == 0 {
		errno = e
	}
	return errno
}
