package encfs

import (
	"sync"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/ppml/ppml/pf"
)

const (
	// readAheadMin is the smallest file that is read ahead; smaller ones are read node by node.
	readAheadMin = 4 << 20
	// segmentSize is the unit of read-ahead: plaintext offsets that are multiples of it start a
	// segment. It is a multiple of the largest FUSE read, which therefore fits in one segment
	// when the kernel aligns it, as its own read-ahead does.
	segmentSize = 4 << 20
	// readAheadWindow is how far the read-ahead may run past the furthest read.
	readAheadWindow = 16 << 20
	// readAheadBehind is how much plaintext it keeps behind the furthest read, for the reads
	// that the kernel sends out of order.
	readAheadBehind = 4 << 20
	// maxSegments bounds the segments of one read-ahead, those that replies still use included.
	maxSegments = (readAheadWindow+readAheadBehind)/segmentSize + 4
	// maxReadAheads bounds the read-aheads that the files of a mount hold at once, and so the
	// plaintext they keep (maxSegments segments each). A large file read while all are taken is
	// read without one. A read-ahead gives its token back when its file has been read to the
	// end, is written to or is closed, and the next sequential read of another file takes it.
	maxReadAheads = 8
)

// segmentSize must be a multiple of the largest request.
var _ [segmentSize % maxRequest]struct{} = [0]struct{}{}

// fileReadAhead is the read-ahead of an open file, which concurrent reads use: mu guards its
// fields.
type fileReadAhead struct {
	mu     sync.Mutex
	tokens chan struct{} // the mount's read-ahead tokens
	ra     *readAhead    // the read-ahead running, if any
	next   int64         // where the last read ended: a read there looks sequential
}

// forRead returns the read-ahead, if any, for a read of size bytes at off in p, which stays open
// meanwhile. If p is large and unchanged, a read that the read-ahead does not cover starts one at
// off, or starts it again there, if it is at the start or right after the previous read
// (sequential reads, wherever they began), and if the mount has a read-ahead to spare.
func (a *fileReadAhead) forRead(p *pf.File, unchanged bool, off int64, size int) *readAhead {
	a.mu.Lock()
	defer a.mu.Unlock()
	sequential := off == 0 || off == a.next
	a.next = off + int64(size)
	if !sequential || !unchanged || a.ra != nil && a.ra.covers(off) || p.Size() < readAheadMin || off >= p.Size() {
		return a.ra
	}
	token := false
	if a.ra != nil {
		token = a.ra.stop(true) // a token it still holds goes to the new one
		a.ra = nil
	}
	if !token {
		select {
		case a.tokens <- struct{}{}:
		default:
			return nil
		}
	}
	a.ra = startReadAhead(p, p.Size(), off, a.tokens)
	return a.ra
}

// stop stops the read-ahead, if any.
func (a *fileReadAhead) stop() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ra != nil {
		a.ra.stop(false)
		a.ra = nil
	}
}

// readAhead decrypts a file ahead of sequential reads, from an offset, into segments of
// plaintext that it keeps for them (pf.File.ReadAt decrypts each on every core). The reads it
// covers are answered from the segments themselves, which stay pinned until the reply has been
// sent. Reads it does not cover go to the file's pf.File; so do reads past a failed node, which
// then fail there. It holds one of its mount's tokens until it stops, or until the file has been
// read to its end, when it retires: it wipes its segments and covers nothing more.
type readAhead struct {
	mu        sync.Mutex
	cond      sync.Cond
	segs      []*segment // the plaintext of [start, end), in order
	free      []*segment
	allocated int
	start     int64
	end       int64
	read      int64 // the furthest offset read or waited for
	served    int64 // the bytes of the replies answered from segments
	size      int64 // the plaintext size
	done      bool  // no more segments will come
	stopped   bool  // stopped or retired: it covers nothing
	exited    chan struct{}
	tokens    chan struct{} // the mount's read-ahead tokens
	token     bool          // it holds one of them
}

// segment is plaintext at off. pins counts the replies that are being sent from it.
type segment struct {
	off  int64
	b    []byte
	pins int
}

// startReadAhead starts decrypting p, whose plaintext is size bytes, from off, holding a token
// that the caller has put into tokens.
func startReadAhead(p *pf.File, size, off int64, tokens chan struct{}) *readAhead {
	ra := &readAhead{size: size, start: off, end: off, read: off, exited: make(chan struct{}), tokens: tokens, token: true}
	ra.cond.L = &ra.mu
	go ra.run(p)
	return ra
}

// run fills segments from p until the end of the file, a failure or stop.
func (ra *readAhead) run(p *pf.File) {
	defer close(ra.exited)
	for {
		seg := ra.nextSegment()
		if seg == nil {
			return
		}
		// The segment ends where the next one starts, or where the file does.
		n := min((seg.off/segmentSize+1)*segmentSize, ra.size) - seg.off
		got, err := p.ReadAt(seg.b[:n], seg.off)
		ra.mu.Lock()
		seg.b = seg.b[:got]
		if got > 0 {
			ra.segs = append(ra.segs, seg)
			ra.end += int64(got)
		} else {
			ra.free = append(ra.free, seg)
		}
		// A failure shows on the pf.File's own reads, which the reads past end go to.
		ra.done = ra.done || err != nil || ra.end >= ra.size
		ra.cond.Broadcast()
		ra.mu.Unlock()
	}
}

// nextSegment waits until the window has room for the next segment, and returns it: a free one,
// one that the reads have left behind, or a new one. It returns nil when the read-ahead is done
// or stopped.
func (ra *readAhead) nextSegment() *segment {
	ra.mu.Lock()
	defer ra.mu.Unlock()
	for {
		if ra.stopped || ra.done {
			return nil
		}
		for len(ra.segs) > 0 && ra.segs[0].pins == 0 && ra.segs[0].off+int64(len(ra.segs[0].b)) <= ra.read-readAheadBehind {
			ra.start += int64(len(ra.segs[0].b))
			ra.free = append(ra.free, ra.segs[0])
			ra.segs = ra.segs[1:]
		}
		if ra.end-ra.read < readAheadWindow {
			var seg *segment
			switch k := len(ra.free); {
			case k > 0:
				seg, ra.free = ra.free[k-1], ra.free[:k-1]
			case ra.allocated < maxSegments:
				ra.allocated++
				seg = &segment{b: make([]byte, segmentSize)}
			}
			if seg != nil {
				seg.off, seg.b = ra.end, seg.b[:cap(seg.b)]
				return seg
			}
		}
		ra.cond.Wait()
	}
}

// readAt answers a read of size bytes at off if the read-ahead covers it, waiting for the
// plaintext if it is about to be decrypted. It reports false if the read-ahead does not cover the
// read.
func (ra *readAhead) readAt(size int, off int64) (fuse.ReadResult, bool) {
	ra.mu.Lock()
	defer ra.mu.Unlock()
	want := min(off+int64(size), ra.size)
	for {
		if ra.stopped || off < ra.start || off >= want || off > ra.end+readAheadWindow {
			return nil, false
		}
		if want <= ra.end {
			break
		}
		if ra.done {
			return nil, false
		}
		// Let the window move up to off, so that the read-ahead cannot wait for this read.
		ra.read = max(ra.read, off)
		ra.cond.Broadcast()
		ra.cond.Wait()
	}
	if want > ra.read {
		ra.read = want
		ra.cond.Broadcast()
	}
	i := 0
	for ra.segs[i].off+int64(len(ra.segs[i].b)) <= off {
		i++
	}
	r := &segmentReply{ra: ra}
	for pos := off; pos < want; i++ {
		seg := ra.segs[i]
		part := seg.b[pos-seg.off : min(want, seg.off+int64(len(seg.b)))-seg.off]
		seg.pins++
		r.segs = append(r.segs, seg)
		r.parts = append(r.parts, part)
		r.size += len(part)
		pos += int64(len(part))
	}
	ra.served += int64(r.size)
	return r, true
}

// covers reports whether a read at off may be served.
func (ra *readAhead) covers(off int64) bool {
	ra.mu.Lock()
	defer ra.mu.Unlock()
	return !ra.stopped && off >= ra.start && off <= ra.end+readAheadWindow && !(ra.done && off >= ra.end)
}

// stop ends the read-ahead, waits for the replies still sent from it, and wipes its plaintext.
// If it still holds its token, stop gives it back, or, with keepToken, reports true and leaves
// it to the caller.
func (ra *readAhead) stop(keepToken bool) bool {
	ra.mu.Lock()
	ra.stopped = true
	ra.cond.Broadcast()
	ra.mu.Unlock()
	<-ra.exited
	ra.mu.Lock()
	defer ra.mu.Unlock()
	for ra.pinned() {
		ra.cond.Wait()
	}
	ra.wipe()
	token := ra.token
	ra.token = false
	if token && !keepToken {
		<-ra.tokens
	}
	return token && keepToken
}

// pinned reports whether a reply is being sent from a segment. ra.mu must be held.
func (ra *readAhead) pinned() bool {
	for _, s := range ra.segs {
		if s.pins > 0 {
			return true
		}
	}
	return false
}

// wipe wipes and drops the segments. ra.mu must be held, and run must fill no more segments
// (it has returned, or the read-ahead is done).
func (ra *readAhead) wipe() {
	for _, s := range append(ra.segs, ra.free...) {
		clear(s.b[:cap(s.b)])
	}
	ra.segs, ra.free = nil, nil
}

// retireIfRead retires the read-ahead once it has decrypted the file to its end, the file has
// been read to its end, as many bytes as it decrypted have been sent from it (so not when a
// reader has only jumped to the end) and no reply is being sent from it: it wipes its segments,
// covers nothing more, and gives its token back for another file. ra.mu must be held.
func (ra *readAhead) retireIfRead() {
	if ra.stopped || !ra.done || ra.end < ra.size || ra.read < ra.size || ra.served < ra.size-ra.start || ra.pinned() {
		return
	}
	ra.stopped = true
	ra.wipe()
	if ra.token {
		ra.token = false
		<-ra.tokens
	}
}

// segmentReply is a reply sent straight from segments, which it keeps pinned until go-fuse has
// sent it. It gives go-fuse the parts as slices (which go-fuse writes out with writev before it
// calls Done), never as one buffer, which go-fuse would take before the send and call Done at once.
type segmentReply struct {
	ra    *readAhead
	segs  []*segment
	parts [][]byte
	size  int
}

func (r *segmentReply) Slices() ([][]byte, fuse.Status) { return r.parts, fuse.OK }
func (r *segmentReply) Size() int                       { return r.size }

// Bytes joins the parts into buf; go-fuse does not call it on a reply that has Slices.
func (r *segmentReply) Bytes(buf []byte) ([]byte, fuse.Status) {
	buf = buf[:0]
	for _, p := range r.parts {
		buf = append(buf, p...)
	}
	return buf, fuse.OK
}

// testHookReplySent, if set, sees the parts of each reply from segments as it is unpinned.
var testHookReplySent func(parts [][]byte)

// Done unpins the segments: go-fuse calls it once the reply has been sent.
func (r *segmentReply) Done() {
	if testHookReplySent != nil {
		testHookReplySent(r.parts)
	}
	r.ra.mu.Lock()
	for _, seg := range r.segs {
		seg.pins--
	}
	r.ra.retireIfRead()
	r.ra.cond.Broadcast()
	r.ra.mu.Unlock()
}
