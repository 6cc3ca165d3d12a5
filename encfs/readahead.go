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
)

// readAhead decrypts a file ahead of sequential reads, from an offset, into segments of
// plaintext that it keeps for them (pf.File.ReadAt decrypts each on every core). A read that lies
// in one segment is answered from the segment itself, which stays pinned until the reply has been
// sent; other reads it covers are copied. Reads it does not cover go to the file's pf.File; so do
// reads past a failed node, which then fail there.
type readAhead struct {
	mu        sync.Mutex
	cond      sync.Cond
	segs      []*segment // the plaintext of [start, end), in order
	free      []*segment
	allocated int
	start     int64
	end       int64
	read      int64 // the furthest offset read or waited for
	size      int64 // the plaintext size
	done      bool  // no more segments will come
	stopped   bool
	exited    chan struct{}
}

// segment is plaintext at off. pins counts the replies that are being sent from it.
type segment struct {
	off  int64
	b    []byte
	pins int
}

// startReadAhead starts decrypting p, whose plaintext is size bytes, from off.
func startReadAhead(p *pf.File, size, off int64) *readAhead {
	ra := &readAhead{size: size, start: off, end: off, read: off, exited: make(chan struct{})}
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

// read answers a read of size bytes at off into dest if the read-ahead covers it, waiting for
// the plaintext if it is about to be decrypted. It reports false if the read-ahead does not cover
// the read.
func (ra *readAhead) readAt(dest []byte, off int64) (fuse.ReadResult, bool) {
	ra.mu.Lock()
	defer ra.mu.Unlock()
	want := min(off+int64(len(dest)), ra.size)
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
	if s := ra.segs[i]; want <= s.off+int64(len(s.b)) {
		s.pins++
		return &segmentReply{ra: ra, seg: s, b: s.b[off-s.off : want-s.off]}, true
	}
	n := 0
	for pos := off; pos < want; i++ {
		s := ra.segs[i]
		k := copy(dest[n:want-off], s.b[pos-s.off:])
		n += k
		pos += int64(k)
	}
	return fuse.ReadResultData(dest[:n]), true
}

// covers reports whether a read at off may be served.
func (ra *readAhead) covers(off int64) bool {
	ra.mu.Lock()
	defer ra.mu.Unlock()
	return !ra.stopped && off >= ra.start && off <= ra.end+readAheadWindow && !(ra.done && off >= ra.end)
}

// stop ends the read-ahead, waits for the replies still sent from it, and wipes its plaintext.
func (ra *readAhead) stop() {
	ra.mu.Lock()
	ra.stopped = true
	ra.cond.Broadcast()
	ra.mu.Unlock()
	<-ra.exited
	ra.mu.Lock()
	defer ra.mu.Unlock()
	for {
		pinned := false
		for _, s := range ra.segs {
			pinned = pinned || s.pins > 0
		}
		if !pinned {
			break
		}
		ra.cond.Wait()
	}
	for _, s := range append(ra.segs, ra.free...) {
		clear(s.b[:cap(s.b)])
	}
	ra.segs, ra.free = nil, nil
}

// segmentReply is a reply sent straight from a segment, which it keeps pinned until it is sent.
type segmentReply struct {
	ra  *readAhead
	seg *segment
	b   []byte
}

func (r *segmentReply) Bytes([]byte) ([]byte, fuse.Status) { return r.b, fuse.OK }
func (r *segmentReply) Size() int                          { return len(r.b) }

// Done unpins the segment: go-fuse calls it once the reply has been sent.
func (r *segmentReply) Done() {
	r.ra.mu.Lock()
	r.seg.pins--
	r.ra.cond.Broadcast()
	r.ra.mu.Unlock()
}
