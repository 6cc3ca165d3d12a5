package encfs

import (
	"errors"
	"io"
	"math"
	"sort"
	"sync"

	"github.com/ppml/ppml/pf"
)

const (
	// readAheadMin is the smallest file that is read ahead; smaller ones are read node by node.
	readAheadMin = 4 << 20
	// readAheadWindow is how far the read-ahead may run past the furthest read.
	readAheadWindow = 16 << 20
	// readAheadBehind is how much plaintext it keeps behind the furthest read, for the reads
	// that the kernel sends out of order.
	readAheadBehind = 2 << 20
)

// errStopped ends a read-ahead's pf.DecryptRange.
var errStopped = errors.New("read-ahead stopped")

// readAhead decrypts a file from an offset ahead of sequential reads, on every core
// (pf.DecryptRange), and keeps a bounded window of the plaintext for them. Reads it does not cover
// go to the file's pf.File; so do reads past a failed node, which then fail there.
type readAhead struct {
	mu      sync.Mutex
	cond    sync.Cond
	chunks  []chunk // the plaintext of [start, end), in order
	free    [][]byte
	start   int64
	end     int64
	read    int64 // the furthest offset read or waited for
	size    int64 // the plaintext size
	done    bool  // pf.DecryptRange returned
	stopped bool
	exited  chan struct{}
}

type chunk struct {
	off int64
	b   []byte
}

// startReadAhead starts decrypting the protected file of hostSize bytes in r, whose plaintext
// size is size, from plaintext offset off.
func startReadAhead(r io.ReaderAt, hostSize, size int64, key pf.Key, off int64) *readAhead {
	ra := &readAhead{size: size, start: off, end: off, read: off, exited: make(chan struct{})}
	ra.cond.L = &ra.mu
	go func() {
		defer close(ra.exited)
		// The file was checked when it was opened; a failure shows on the pf.File's reads.
		pf.DecryptRange(ra, r, hostSize, key, off, math.MaxInt64, nil)
		ra.mu.Lock()
		ra.done = true
		ra.cond.Broadcast()
		ra.mu.Unlock()
	}()
	return ra
}

// Write takes the next plaintext from pf.DecryptRange, waiting while the window is full.
func (ra *readAhead) Write(p []byte) (int, error) {
	ra.mu.Lock()
	defer ra.mu.Unlock()
	for !ra.stopped && ra.end-ra.read >= readAheadWindow {
		ra.cond.Wait()
	}
	if ra.stopped {
		return 0, errStopped
	}
	for len(ra.chunks) > 0 && ra.chunks[0].off+int64(len(ra.chunks[0].b)) <= ra.read-readAheadBehind {
		ra.start += int64(len(ra.chunks[0].b))
		ra.free = append(ra.free, ra.chunks[0].b)
		ra.chunks = ra.chunks[1:]
	}
	var b []byte
	if k := len(ra.free); k > 0 && cap(ra.free[k-1]) >= len(p) {
		b, ra.free = ra.free[k-1][:len(p)], ra.free[:k-1]
	} else {
		b = make([]byte, len(p))
	}
	copy(b, p)
	ra.chunks = append(ra.chunks, chunk{off: ra.end, b: b})
	ra.end += int64(len(p))
	ra.cond.Broadcast()
	return len(p), nil
}

// readAt copies the plaintext at off into p, waiting for it if it is about to be decrypted. It
// reports false if the read-ahead does not cover the read.
func (ra *readAhead) readAt(p []byte, off int64) (int, bool) {
	ra.mu.Lock()
	defer ra.mu.Unlock()
	want := min(off+int64(len(p)), ra.size)
	for {
		if ra.stopped || off < ra.start || off >= want || off > ra.end+readAheadWindow {
			return 0, false
		}
		if want <= ra.end {
			break
		}
		if ra.done {
			return 0, false
		}
		// Let the window move up to off, so that the read-ahead cannot wait for this read.
		ra.read = max(ra.read, off)
		ra.cond.Broadcast()
		ra.cond.Wait()
	}
	i := sort.Search(len(ra.chunks), func(i int) bool {
		return ra.chunks[i].off+int64(len(ra.chunks[i].b)) > off
	})
	n := 0
	for pos := off; pos < want; i++ {
		c := ra.chunks[i]
		k := copy(p[n:want-off], c.b[pos-c.off:])
		n += k
		pos += int64(k)
	}
	if want > ra.read {
		ra.read = want
		ra.cond.Broadcast()
	}
	return n, true
}

// covers reports whether a read at off may be served.
func (ra *readAhead) covers(off int64) bool {
	ra.mu.Lock()
	defer ra.mu.Unlock()
	return !ra.stopped && off >= ra.start && off <= ra.end+readAheadWindow && !(ra.done && off >= ra.end)
}

// stop ends the read-ahead and waits for its pf.DecryptRange to return.
func (ra *readAhead) stop() {
	ra.mu.Lock()
	ra.stopped = true
	for _, c := range ra.chunks {
		clear(c.b)
	}
	for _, b := range ra.free {
		clear(b)
	}
	ra.chunks, ra.free = nil, nil
	ra.cond.Broadcast()
	ra.mu.Unlock()
	<-ra.exited
}
