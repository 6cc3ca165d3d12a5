package trustfs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// trusted is a trusted file: a host file and the hash the manifest gives it.
type trusted struct {
	host string
	want [sha256.Size]byte
	id   uint64 // the number of the file in its mount, in its chunks' tags

	checking sync.Mutex              // held while the file is checked: its opens wait for the check
	checked  atomic.Pointer[checked] // what the check found, once the file has passed it
	opened   atomic.Bool             // an open passed the check (Stats.Opened)
}

// checked is what the check of a trusted file found, which every later read is compared with.
type checked struct {
	size int64
	tags []tag     // the tag of each chunk
	attr fuse.Attr // the host file's status when it was checked
}

// fileNode is a trusted file.
type fileNode struct {
	gofs.Inode
	fsys *fsys
	file *trusted
	// hostAttr is set when Getattr gave the host file's status, before the check, which the
	// kernel may keep until the first open that passes the check makes it drop it.
	hostAttr atomic.Bool
}

var (
	_ gofs.NodeGetattrer = (*fileNode)(nil)
	_ gofs.NodeOpener    = (*fileNode)(nil)
)

// hostReadFlags open a host file for reading: never through a link at the end of its path, and
// without blocking or making a terminal the caller's, whatever the host put there; the caller
// checks what opened.
const hostReadFlags = unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_NOCTTY

// Getattr gives the checked file's status; before the check, the host file's. The kernel may
// keep either (a workload stats many files that it never opens), but a size the host shows
// before the check (a prefix, say) must not outlive it and cut the reads of the checked content
// short, nor extend them: the open that passes the check makes the kernel drop it (Open).
func (n *fileNode) Getattr(ctx context.Context, _ gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.SetTimeout(cacheTimeout)
	if c := n.file.checked.Load(); c != nil {
		out.Attr = c.attr
		return 0
	}
	// Marked before the check is looked at again, so that an open that the check passes
	// meanwhile sees the mark; the kernel ignores this reply if it comes after that open's
	// invalidation.
	n.hostAttr.Store(true)
	if c := n.file.checked.Load(); c != nil {
		out.Attr = c.attr
		return 0
	}
	return n.fsys.hostGetattr(n.file.host, syscall.S_IFREG, &out.Attr)
}

// hostGetattr fills out with the status of the host entry host, which must still be of the
// type kind (S_IFREG, S_IFLNK): one that changed type, a file swapped for a link say, is ENOENT.
func (s *fsys) hostGetattr(host string, kind uint32, out *fuse.Attr) syscall.Errno {
	var st syscall.Stat_t
	if err := s.root.Stat(host, &st); err != nil {
		return s.hostErrno(host, "stat", err)
	}
	if st.Mode&syscall.S_IFMT != kind {
		return syscall.ENOENT
	}
	hostAttr(&st, out)
	return 0
}

func (n *fileNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		return nil, 0, syscall.EROFS
	}
	f, err := n.fsys.root.OpenFile(n.file.host, hostReadFlags, 0)
	if err != nil {
		return nil, 0, n.fsys.hostErrno(n.file.host, "open", err)
	}
	c, errno := n.fsys.check(ctx, n.file, f, runtime.GOMAXPROCS(0))
	if errno != 0 {
		go f.Close() // which waits for the reads of a check given up on
		return nil, 0, errno
	}
	if n.hostAttr.Swap(false) {
		// The kernel may hold the host file's status from before the check: it drops it (a
		// negative offset invalidates the attributes only), before this open returns, and asks
		// for the checked one.
		if errno := n.NotifyContent(-1, 0); errno != 0 && errno != syscall.ENOENT {
			n.fsys.log.Error("trustfs: the kernel could not be told to drop a trusted file's status from before its check", "file", n.fsys.root.Name(n.file.host), "err", errno)
			go f.Close()
			return nil, 0, syscall.EIO
		}
	}
	n.fsys.opened(n.file)
	// The kernel caches only what Read replied, which is the checked content: it may keep it.
	return &handle{fsys: n.fsys, file: n.file, host: f, checked: c}, fuse.FOPEN_KEEP_CACHE, 0
}

// check checks the trusted file t, whose host file f has just been opened: on its first open,
// f's content against the manifest's hash, with that many workers reading it, and later that f
// has the size it had then. A file that fails is EACCES and a log line.
func (s *fsys) check(ctx context.Context, t *trusted, f *os.File, workers int) (*checked, syscall.Errno) {
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return nil, s.hostErrno(t.host, "stat", err)
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		s.log.Error("trustfs: trusted file refused: it is not a regular file", "file", s.root.Name(t.host))
		return nil, syscall.EACCES
	}
	c := t.checked.Load()
	if c == nil {
		t.checking.Lock()
		defer t.checking.Unlock()
		if c = t.checked.Load(); c == nil { // unless checked while this open waited
			return s.checkFirst(ctx, t, f, &st, workers)
		}
	}
	if st.Size != c.size {
		s.log.Error("trustfs: trusted file refused: it changed since it was checked", "file", s.root.Name(t.host), "size", st.Size, "checked_size", c.size)
		return nil, syscall.EACCES
	}
	return c, 0
}

// checkFirst checks the content of f, the host file of t, whose status is st, against the
// manifest's hash. t.checking must be held. A host file that does not give a chunk within
// s.hostTimeout is EIO and a log line, and an open that the caller interrupts is EINTR: either
// way the file is checked again at its next open.
func (s *fsys) checkFirst(ctx context.Context, t *trusted, f *os.File, st *syscall.Stat_t, workers int) (*checked, syscall.Errno) {
	begin := time.Now()
	tags, whole, err := hashChunks(ctx, f, st.Size, workers, s.hostTimeout, func(i int64, b []byte) tag { return s.tagger.tag(t.id, i, b) })
	switch {
	case errors.Is(err, errStalled):
		s.log.Error("trustfs: trusted file not checked: its host file did not answer in time", "file", s.root.Name(t.host), "timeout", s.hostTimeout)
		return nil, syscall.EIO
	case ctx.Err() != nil && errors.Is(err, ctx.Err()):
		return nil, syscall.EINTR
	case err != nil:
		s.log.Error("trustfs: trusted file refused: it cannot be read", "file", s.root.Name(t.host), "err", err)
		return nil, syscall.EACCES
	case whole != t.want:
		s.log.Error("trustfs: trusted file refused: its SHA-256 is not the manifest's", "file", s.root.Name(t.host),
			"sha256", hex.EncodeToString(whole[:]), "manifest", hex.EncodeToString(t.want[:]))
		return nil, syscall.EACCES
	}
	c := &checked{size: st.Size, tags: tags}
	hostAttr(st, &c.attr)
	t.checked.Store(c)
	s.counted(st.Size, time.Since(begin))
	return c, 0
}

// errStalled is hashChunks's error when the host file does not give a chunk in time.
var errStalled = errors.New("the host file did not answer in time")

// hashChunks reads the size bytes of f in chunks of ChunkSize and returns the tag of each, as
// tagOf makes it, and the SHA-256 of the whole. Up to that many workers read and tag several
// chunks at once, while the whole's hash, which cannot be split, takes them in order in the
// caller's goroutine; 2 chunks a worker are in memory at most. It gives up, leaving the reads under way to finish on their own, when
// ctx is done or when no chunk has come for timeout (errStalled): a host that never answers a
// read does not hang the caller.
func hashChunks(ctx context.Context, f io.ReaderAt, size int64, workers int, timeout time.Duration, tagOf func(i int64, b []byte) tag) ([]tag, [sha256.Size]byte, error) {
	n := int((size + ChunkSize - 1) / ChunkSize)
	tags := make([]tag, n)
	if n == 0 {
		return tags, sha256.Sum256(nil), nil
	}
	type job struct {
		i int
		b []byte
	}
	type piece struct {
		b   []byte
		err error
	}
	workers = max(1, min(workers, n))
	bufSize := min(ChunkSize, size)
	free := make(chan []byte, min(2*workers, n))
	for range cap(free) {
		free <- (*chunkBuffers.Get().(*[]byte))[:bufSize]
	}
	ready := make([]chan piece, n)
	for i := range ready {
		ready[i] = make(chan piece, 1)
	}
	jobs := make(chan job)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	// Chunks get their buffers in order, so that the one the whole's hash waits for has one.
	wg.Go(func() {
		defer close(jobs)
		for i := range n {
			var b []byte
			select {
			case b = <-free:
			case <-stop:
				return
			}
			select {
			case jobs <- job{i, b}:
			case <-stop:
				return
			}
		}
	})
	for range workers {
		wg.Go(func() {
			for j := range jobs {
				off := int64(j.i) * ChunkSize
				b := j.b[:min(ChunkSize, size-off)]
				_, err := f.ReadAt(b, off)
				if err == nil {
					tags[j.i] = tagOf(int64(j.i), b)
				}
				ready[j.i] <- piece{b, err}
			}
		})
	}
	h := sha256.New()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var err error
	for i := 0; i < n && err == nil; i++ {
		select {
		case p := <-ready[i]:
			if err = p.err; err == nil {
				h.Write(p.b)
				free <- p.b[:bufSize]
				timer.Reset(timeout)
			}
		case <-timer.C:
			close(stop)
			return nil, [sha256.Size]byte{}, errStalled // without waiting for the reads under way
		case <-ctx.Done():
			close(stop)
			return nil, [sha256.Size]byte{}, ctx.Err()
		}
	}
	close(stop)
	wg.Wait()
	if err == nil { // every buffer is back
		for range cap(free) {
			b := <-free
			chunkBuffers.Put(&b)
		}
	}
	var whole [sha256.Size]byte
	h.Sum(whole[:0])
	return tags, whole, err
}

// chunkBuffers are the buffers of chunks that hashChunks reads, kept for the next check: a
// file's check needs a few, and a run checks thousands of files.
var chunkBuffers = sync.Pool{New: func() any {
	b := make([]byte, ChunkSize)
	return &b
}}

// handle is an open trusted file.
type handle struct {
	fsys    *fsys
	file    *trusted
	host    *os.File
	checked *checked
}

var (
	_ gofs.FileReader   = (*handle)(nil)
	_ gofs.FileReleaser = (*handle)(nil)
)

// Read serves what the checked chunks hold, each verified again unless verified lately.
func (h *handle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	end := min(off+int64(len(dest)), h.checked.size)
	if i := off / ChunkSize; off < end && (end-1)/ChunkSize == i {
		// Within one chunk, as the kernel's requests mostly are: the reply is the verified
		// chunk itself, which nothing changes, without a copy.
		b, errno := h.chunk(i)
		if errno != 0 {
			return nil, errno
		}
		return fuse.ReadResultData(b[off-i*ChunkSize : end-i*ChunkSize]), 0
	}
	n := 0
	for pos := off; pos < end; {
		i := pos / ChunkSize
		b, errno := h.chunk(i)
		if errno != 0 {
			return nil, errno
		}
		start := i * ChunkSize
		n += copy(dest[n:], b[pos-start:min(end-start, int64(len(b)))])
		pos = start + ChunkSize
	}
	return fuse.ReadResultData(dest[:n]), 0
}

// chunk returns the content of chunk i, read from the host file and checked against its hash
// unless the cache holds it. A chunk that changed is EIO and a log line.
func (h *handle) chunk(i int64) ([]byte, syscall.Errno) {
	key := chunkKey{h.file, i}
	if b := h.fsys.cache.get(key); b != nil {
		return b, 0
	}
	b := make([]byte, min(ChunkSize, h.checked.size-i*ChunkSize))
	if _, err := h.host.ReadAt(b, i*ChunkSize); err != nil {
		h.fsys.log.Error("trustfs: read of a trusted file failed: it changed since it was checked", "file", h.fsys.root.Name(h.file.host), "offset", i*ChunkSize, "err", err)
		return nil, syscall.EIO
	}
	if h.fsys.tagger.tag(h.file.id, i, b) != h.checked.tags[i] {
		h.fsys.log.Error("trustfs: read of a trusted file failed: it changed since it was checked", "file", h.fsys.root.Name(h.file.host), "offset", i*ChunkSize)
		return nil, syscall.EIO
	}
	h.fsys.cache.put(key, b)
	return b, 0
}

func (h *handle) Release(ctx context.Context) syscall.Errno {
	h.host.Close()
	return 0
}

// emptyFile is an empty file of the filesystem's own: a mount point.
type emptyFile struct {
	gofs.Inode
	fsys *fsys
}

var _ gofs.NodeGetattrer = (*emptyFile)(nil)

func (n *emptyFile) Getattr(ctx context.Context, _ gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.SetTimeout(cacheTimeout)
	n.fsys.ownAttr(syscall.S_IFREG, &out.Attr)
	return 0
}

// hostFile is a host file served unchecked: read-only, or, once a Creatable entry's file
// exists, writable (create.go).
type hostFile struct {
	gofs.Inode
	fsys     *fsys
	host     string
	writable bool
}

var (
	_ gofs.NodeGetattrer = (*hostFile)(nil)
	_ gofs.NodeOpener    = (*hostFile)(nil)
)

func (n *hostFile) Getattr(ctx context.Context, _ gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	return n.fsys.hostGetattr(n.host, syscall.S_IFREG, &out.Attr)
}

func (n *hostFile) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if n.writable {
		return n.openWritable(flags)
	}
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		return nil, 0, syscall.EROFS
	}
	f, err := n.fsys.root.OpenFile(n.host, hostReadFlags, 0)
	if err != nil {
		return nil, 0, n.fsys.hostErrno(n.host, "open", err)
	}
	if info, err := f.Stat(); err != nil || !info.Mode().IsRegular() {
		f.Close()
		return nil, 0, syscall.ENOENT // no longer a file
	}
	// No FOPEN_KEEP_CACHE: each open sees what the host holds then.
	return &hostHandle{f}, 0, 0
}

// hostHandle is an open host file served unchecked.
type hostHandle struct{ f *os.File }

var (
	_ gofs.FileReader   = (*hostHandle)(nil)
	_ gofs.FileReleaser = (*hostHandle)(nil)
)

func (h *hostHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	n, err := h.f.ReadAt(dest, off)
	if err != nil && err != io.EOF {
		return nil, errnoOf(err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

func (h *hostHandle) Release(ctx context.Context) syscall.Errno {
	h.f.Close()
	return 0
}

// hostLink is a host symbolic link served unchecked: the reader resolves it where it is.
type hostLink struct {
	gofs.Inode
	fsys *fsys
	host string
}

var (
	_ gofs.NodeGetattrer  = (*hostLink)(nil)
	_ gofs.NodeReadlinker = (*hostLink)(nil)
)

func (n *hostLink) Getattr(ctx context.Context, _ gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	return n.fsys.hostGetattr(n.host, syscall.S_IFLNK, &out.Attr)
}

func (n *hostLink) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	target, err := n.fsys.root.Readlink(n.host)
	if err != nil {
		return nil, n.fsys.hostErrno(n.host, "readlink", err)
	}
	return target, 0
}
