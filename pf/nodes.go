package pf

import (
	"io"
	"runtime"
	"sync"
	"sync/atomic"
)

// bulkNodes is the least number of whole data nodes that File.ReadAt decrypts straight into the
// caller's buffer, on every core, rather than one by one through the node cache.
const bulkNodes = 8

// maxBuffers bounds the memory that runBuffers keeps: 6 MiB.
const maxBuffers = 16

// runBuffers keeps buffers for the ciphertext of up to one MHT node's data nodes, with room for
// a tag after the last. Unlike a sync.Pool it keeps them across garbage collections: filling
// fresh memory can cost more than the copy into it.
var runBuffers bufferStack

// bufferStack is a stack of reusable buffers of one size: at most two per core, and at most
// maxBuffers.
type bufferStack struct {
	mu   sync.Mutex
	bufs [][]byte
}

func (s *bufferStack) get() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	if k := len(s.bufs); k > 0 {
		b := s.bufs[k-1]
		s.bufs = s.bufs[:k-1]
		return b
	}
	return make([]byte, groupBytes+MACSize)
}

func (s *bufferStack) put(b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.bufs) < min(maxBuffers, 2*runtime.GOMAXPROCS(0)) {
		s.bufs = append(s.bufs, b)
	}
}

// readRun reads the ciphertexts of the len(slots) data nodes from first, which lie next to each
// other in r, into in and decrypts them into dst under their slots. On an error, a *NodeError
// for the first node that fails, the nodes before it are in dst.
func readRun(r io.ReaderAt, dst, in []byte, first int64, slots []slot) error {
	off := dataOffset(first)
	n, rerr := r.ReadAt(in[:len(slots)*NodeSize], off)
	whole := n / NodeSize
	for i := range slots[:whole] {
		at := i * NodeSize
		// GCM wants the tag right after the ciphertext: lend it the next node's first bytes.
		var saved [MACSize]byte
		tag := in[at+NodeSize : at+NodeSize+MACSize]
		copy(saved[:], tag)
		copy(tag, slots[i].mac[:])
		_, err := newGCM(&slots[i].key).Open(dst[at:at], zeroIV[:], in[at:at+NodeSize+MACSize], nil)
		copy(tag, saved[:])
		if err != nil {
			return &NodeError{Kind: "data", Index: first + int64(i), Offset: off + int64(at), Err: ErrDamaged}
		}
	}
	if whole < len(slots) {
		if rerr == nil || rerr == io.EOF {
			rerr = ErrTruncated
		}
		return &NodeError{Kind: "data", Index: first + int64(whole), Offset: off + int64(whole)*NodeSize, Err: rerr}
	}
	return nil
}

// run is a stretch of data nodes under one MHT node, none of them cached: len(slots) nodes from
// first, whose plaintext goes to dst.
type run struct {
	first int64
	slots []slot
	dst   []byte
}

// readNodes reads the plaintext of the data nodes from first into dst, which holds a whole
// number of them: the cached ones (and new ones) from the cache, the others straight from
// storage, decrypted on every core without passing through the cache. It returns how many nodes,
// from the first, it has read when it returns an error. f.mu must be held.
func (f *File) readNodes(dst []byte, first int64) (int64, error) {
	if f.err != nil {
		return 0, f.err
	}
	count := int64(len(dst) / NodeSize)
	var runs []run
	var i int64
	var err error
	for i < count {
		d := first + i
		if f.cache.get(nodeID{n: d}) != nil || d >= f.diskData {
			var n *node
			if n, err = f.data(d); err != nil {
				break
			}
			copy(dst[i*NodeSize:(i+1)*NodeSize], n.buf[:NodeSize])
			i++
			continue
		}
		// Flushes on the way (to make room for MHT nodes) rewrite changed nodes only: the slots
		// of the clean, uncached nodes taken here stay valid.
		m := d / dataPerMHT
		var parent *node
		if parent, err = f.mht(m); err != nil {
			break
		}
		// d is uncached and on storage, and f.mht adds MHT nodes only: the run holds d at least.
		r := run{first: d, dst: dst[i*NodeSize:]}
		for ; i < count && first+i < min((m+1)*dataPerMHT, f.diskData) && f.cache.get(nodeID{n: first + i}) == nil; i++ {
			r.slots = append(r.slots, getSlot(dataSlot(parent.buf[:], int((first+i)%dataPerMHT))))
		}
		runs = append(runs, r)
	}
	// The runs before a failure hold plaintext all the same: read them.
	if rerr := readRuns(f.r, runs); rerr != nil {
		return rerr.Index - first, rerr
	}
	return i, err
}

// readRuns reads and decrypts runs, on every core if there are enough nodes to share, and returns
// the error of the first node that fails.
func readRuns(r io.ReaderAt, runs []run) *NodeError {
	total := 0
	for _, rn := range runs {
		total += len(rn.slots)
	}
	// Split the runs so that every core gets a share.
	share := max(bulkNodes, (total+runtime.GOMAXPROCS(0)-1)/runtime.GOMAXPROCS(0))
	var pieces []run
	for _, rn := range runs {
		for len(rn.slots) > 0 {
			k := min(share, len(rn.slots))
			pieces = append(pieces, run{first: rn.first, slots: rn.slots[:k], dst: rn.dst})
			rn.first, rn.slots, rn.dst = rn.first+int64(k), rn.slots[k:], rn.dst[k*NodeSize:]
		}
	}
	errs := make([]*NodeError, len(pieces))
	var next atomic.Int64
	work := func() {
		in := runBuffers.get()
		defer runBuffers.put(in)
		for i := next.Add(1) - 1; i < int64(len(pieces)); i = next.Add(1) - 1 {
			if err := readRun(r, pieces[i].dst, in, pieces[i].first, pieces[i].slots); err != nil {
				errs[i] = err.(*NodeError)
			}
		}
	}
	var wg sync.WaitGroup
	for range min(len(pieces), runtime.GOMAXPROCS(0)) - 1 {
		wg.Go(work)
	}
	work()
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
