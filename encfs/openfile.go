package encfs

import (
	"errors"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/ppml/ppml/internal/hostdir"
	"github.com/ppml/ppml/pf"
)

// openFile is the content of an open file: one pf.File that all the file's handles share. It
// reads the host file itself until the first change; then it moves to a private copy of the host
// file, which commit renames over the host file when a writer closes the file, on fsync, and on
// the last release (see openState). Each handle keeps it open, so that reads and writes through
// a handle need no lock of the node.
//
// mu guards the fields below it. Reads hold it shared, everything else exclusively.
type openFile struct {
	node  *fileNode
	ahead fileReadAhead // its own lock

	mu     sync.RWMutex
	state  openState
	pf     *pf.File
	host   *os.File        // the host file or copy under pf
	seen   hostSeen        // the host file under pf, while reading
	temp   string          // the copy's name in the file's host folder, while shadowed
	mtime  time.Time       // the last change, unless reading
	times  []unix.Timespec // access and modification times to give the copy on commit
	logged string          // the last failure logged, so that kernel retries log it once
}

// openState is what an open file's pf.File is over, and so what becomes of its changes. change,
// commit and removed move a file from one to another.
type openState int

const (
	// reading: the host file itself, which it never writes. Nothing has changed since the file
	// was opened or last committed. A removed file stays reading until it changes.
	reading openState = iota
	// shadowed: a private copy of the host file, named temp in its host folder, which holds the
	// changes until commit renames it over the host file (and the file is reading again).
	shadowed
	// orphaned: a private copy with no name, as the file was removed: its changes are never
	// committed and go with the last handle.
	orphaned
)

// hostSeen is what a reading file last read or wrote of the host file under it. A change copies
// the host file only while it still is that file, with those bytes: a host that swaps in other
// bytes between an open and the first write (another file's, an older version's) gets EIO, not
// its bytes adopted.
type hostSeen struct {
	id     hostID    // its identity and times; the host's changes move its ctime
	header pf.Header // its header, with the nonce and MAC of its metadata, fresh on every write
	path   string    // the path bound into it
}

// errChanged is the failure of a change to a file whose host file changed outside encfs.
var errChanged = errors.New("the host file changed outside encfs since encfs opened or wrote it")

// newOpenFile returns the content of n, newly opened as p over the host file hf, which is as
// seen.
func newOpenFile(n *fileNode, p *pf.File, hf *os.File, seen hostSeen) *openFile {
	return &openFile{node: n, ahead: fileReadAhead{tokens: n.fsys.readAheads}, pf: p, host: hf, seen: seen}
}

// hostID returns the identity of the host file or copy under pf.
func (f *openFile) hostID() (hostID, error) {
	var st syscall.Stat_t
	err := syscall.Fstat(int(f.host.Fd()), &st)
	return idOf(&st), err
}

// unchanged returns errChanged unless the host file under a reading file has the identity seen.
func (f *openFile) unchanged() error {
	id, err := f.hostID()
	if err == nil && id != f.seen.id {
		err = errChanged
	}
	return err
}

// ownChange notes a change that encfs made itself to the host file under a reading file (to its
// attributes or its names), which moves its ctime: its identity now is the one seen. The header
// stays the reference for its bytes. f.mu must be held exclusively.
func (f *openFile) ownChange() {
	if f.state != reading {
		return
	}
	if id, err := f.hostID(); err == nil {
		f.seen.id = id
	}
}

// rebound notes that encfs bound the host file to the path to, through hf, a descriptor of its
// own, rewriting its header from was to now. A reading file over the same host file, with the
// header was, takes them as seen; any other keeps what it saw, and fails its next change. f.mu
// must be held exclusively.
func (f *openFile) rebound(hf *os.File, was, now pf.Header, to string) {
	if f.state != reading || f.seen.header != was {
		return
	}
	var st, hst syscall.Stat_t
	if syscall.Fstat(int(f.host.Fd()), &st) != nil || syscall.Fstat(int(hf.Fd()), &hst) != nil ||
		st.Dev != hst.Dev || st.Ino != hst.Ino {
		return
	}
	f.seen = hostSeen{id: idOf(&st), header: now, path: to}
}

// read reads len(dest) bytes at off, from the read-ahead where it covers them. f.mu must be
// held.
func (f *openFile) read(dest []byte, off int64) (fuse.ReadResult, error) {
	if ra := f.ahead.forRead(f.pf, f.state == reading, off, len(dest)); ra != nil {
		if res, ok := ra.readAt(len(dest), off); ok {
			return res, nil
		}
	}
	got, err := f.pf.ReadAt(dest, off)
	if err != nil && err != io.EOF {
		return nil, err
	}
	return fuse.ReadResultData(dest[:got]), nil
}

// attr fills out from st, the host file's status, with the plaintext size and the time of the
// last change. f.mu must be held.
func (f *openFile) attr(st *syscall.Stat_t, out *fuse.Attr) {
	hostAttr(st, out)
	out.Size = uint64(f.pf.Size())
	if f.state != reading {
		out.SetTimes(nil, &f.mtime, nil)
	}
}

// change prepares the content for a change. A reading file moves to a fresh private copy of
// the host file (an empty protected file if empty is set), so that the host file keeps its
// content until commit: it is then shadowed, or orphaned if it was removed. ns and f.mu must be
// held, f.mu exclusively.
func (f *openFile) change(empty bool) error {
	if f.state != reading {
		return nil
	}
	s := f.node.fsys
	rel, named := f.node.where()
	dir := "" // an orphan's copy is made in the host folder, and gets no name
	if named {
		dir = hostdir.Dir(rel)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.host.Fd()), &st); err != nil {
		return err
	}
	if !empty && idOf(&st) != f.seen.id {
		return errChanged
	}
	name := s.newTemp()
	temp := hostdir.Join(dir, name)
	tf, err := s.root.OpenFile(temp, os.O_RDWR|os.O_CREATE|os.O_EXCL, st.Mode&0777)
	if err != nil {
		s.dropTemp(name)
		return err
	}
	// The copy replaces the host file: it keeps its owner where we may set it.
	if int(st.Uid) != os.Geteuid() || int(st.Gid) != os.Getegid() {
		tf.Chown(int(st.Uid), int(st.Gid))
	}
	p, err := f.copyTo(tf, st.Size, empty)
	if err != nil {
		tf.Close()
		s.root.Remove(temp, 0)
		s.dropTemp(name)
		return err
	}
	state := shadowed
	if !named {
		s.root.Remove(temp, 0)
		s.dropTemp(name)
		name, state = "", orphaned
	}
	f.ahead.stop()
	f.pf.Close()
	f.host.Close()
	f.state, f.pf, f.host, f.temp, f.mtime = state, p, tf, name, time.Now()
	return nil
}

// copyTo copies the content, the hostSize bytes of the host file as seen, to tf, a new host
// file, and returns it opened there.
func (f *openFile) copyTo(tf *os.File, hostSize int64, empty bool) (*pf.File, error) {
	s := f.node.fsys
	if empty {
		return pf.Create(tf, s.kdk(), f.seen.path, nil)
	}
	if _, err := f.host.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	// Both are *os.File: the kernel copies (copy_file_range), the bytes never come here.
	if _, err := io.CopyN(tf, f.host, hostSize); err != nil {
		return nil, err
	}
	// The copy must hold the bytes seen: the host file did not change while it was copied, and
	// the copy is bound to the file's path with the header seen, whose MAC covers the root of
	// the tree of MACs over every other node.
	if err := f.unchanged(); err != nil {
		return nil, err
	}
	p, err := pf.Open(tf, hostSize, s.kdk(), &pf.Options{CheckPath: true, Path: f.seen.path})
	if err == nil && p.Header() != f.seen.header {
		p.Close()
		p, err = nil, errChanged
	}
	return p, err
}

// commit makes the changes of a shadowed file durable: it flushes the copy, syncs it and
// renames it over the host file, and the file is reading again. ns and f.mu must be held, f.mu
// exclusively.
func (f *openFile) commit() error {
	if f.state != shadowed {
		return nil
	}
	s := f.node.fsys
	rel, ok := f.node.where()
	if !ok {
		return nil // nothing to replace: the changes die with the last handle
	}
	bound := s.boundPath(rel)
	err := f.pf.SetPath(bound)
	if err == nil {
		err = f.pf.Flush()
	}
	if err == nil && f.times != nil {
		err = futimens(int(f.host.Fd()), f.times)
	}
	if err == nil {
		err = f.host.Sync()
	}
	if err == nil {
		err = s.root.Rename(hostdir.Join(hostdir.Dir(rel), f.temp), rel, 0)
	}
	if err != nil {
		return err
	}
	s.dropTemp(f.temp)
	f.state, f.temp, f.times = reading, "", nil
	f.seen = hostSeen{header: f.pf.Header(), path: bound}
	f.seen.id, _ = f.hostID()        // after the rename, which moves its ctime
	s.root.SyncDir(hostdir.Dir(rel)) // makes the rename durable
	return nil
}

// setAttr applies the mode, owner and times that in sets to the host file at rel, if named, and
// to a shadowed file's copy, which replaces it on commit (the times after its last write). f.mu
// must be held exclusively.
func (f *openFile) setAttr(rel string, named bool, in *fuse.SetAttrIn) error {
	if named {
		if err := setAttr(f.node.fsys.root, rel, in); err != nil {
			return err
		}
		f.ownChange()
	}
	if f.state != shadowed {
		return nil
	}
	if err := setHostAttr(int(f.host.Fd()), in); err != nil {
		return err
	}
	if ts, ok := timesOf(in); ok {
		f.times = ts
		if mtime, ok := in.GetMTime(); ok {
			f.mtime = mtime
		}
	}
	return nil
}

// removed notes that the file's name, in the folder dir, is gone. A shadowed file's copy loses
// its name too: the file is orphaned. f.mu must be held exclusively.
func (f *openFile) removed(dir string) {
	f.ownChange() // the unlink moved its ctime
	if f.state != shadowed {
		return
	}
	f.node.fsys.root.Remove(hostdir.Join(dir, f.temp), 0)
	f.node.fsys.dropTemp(f.temp)
	f.state, f.temp = orphaned, ""
}

// moved moves a shadowed file's copy from the host folder from to the host folder to. f.mu must
// be held exclusively.
func (f *openFile) moved(from, to string) error {
	if f.state != shadowed || from == to {
		return nil
	}
	return f.node.fsys.root.Rename(hostdir.Join(from, f.temp), hostdir.Join(to, f.temp), 0)
}

// close closes the content after the last handle: it commits the changes, or drops a copy
// that did not commit, and notes the plaintext size of the host file it read. ns, the node's mu
// and f.mu must be held, f.mu exclusively.
func (f *openFile) close() syscall.Errno {
	var errno syscall.Errno
	if err := f.commit(); err != nil {
		errno = f.fail("close", err)
	}
	if f.state == shadowed { // the commit failed: the host file keeps its old content
		rel, _ := f.node.where()
		f.node.fsys.root.Remove(hostdir.Join(hostdir.Dir(rel), f.temp), 0)
		f.node.fsys.dropTemp(f.temp)
	}
	if f.state == reading && f.unchanged() == nil {
		f.node.id, f.node.size = f.seen.id, f.pf.Size()
	}
	f.ahead.stop()
	f.pf.Close()
	f.host.Close()
	return errno
}

// fail logs err, a failure of op, unless it is the failure last logged, and returns its errno.
// ns and f.mu must be held, f.mu exclusively.
func (f *openFile) fail(op string, err error) syscall.Errno {
	if err.Error() == f.logged {
		return errnoOf(err)
	}
	f.logged = err.Error()
	host := "(unlinked)"
	if rel, ok := f.node.where(); ok {
		host = f.node.fsys.root.Name(rel)
	}
	return f.node.fsys.errno(host, op, err)
}
