package pf

import (
	"fmt"
	"io"
	"math"
	"runtime"
	"sync"
)

// A group is the work unit of Encrypt and Decrypt: the up to 96 data nodes under one MHT node,
// which lie next to each other in the host file.
type group struct {
	m     int64 // the MHT node
	first int64 // the group's first data node: m*dataPerMHT, or later in DecryptRange's first group
	nodes int   // data nodes in the group, from first
	skip  int   // plaintext bytes of the first node before the range (DecryptRange)
	bytes int   // plaintext bytes in the group, from skip
	in    []byte
	out   []byte
	slots [dataPerMHT]slot
	err   error
	done  chan struct{}
}

const groupBytes = dataPerMHT * NodeSize

// pipeline runs work on the groups that produce yields, on every core, and hands them to consume
// in order. produce returns false when there is no more work. Groups hold buffers of groupSize
// bytes, allocated as needed.
func pipeline(groupSize int, produce func(*group) (bool, error), work func(*group), consume func(*group) error) error {
	workers := runtime.GOMAXPROCS(0)
	depth := 2 * workers
	free := make(chan *group, depth)
	allocated := 0
	get := func() *group {
		if len(free) == 0 && allocated < depth {
			allocated++
			// Room for one tag past the last node: GCM appends it.
			return &group{in: make([]byte, groupSize+MACSize), out: make([]byte, groupSize+MACSize)}
		}
		return <-free
	}
	jobs := make(chan *group)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for g := range jobs {
				work(g)
				close(g.done)
			}
		})
	}
	var queue []*group
	// finish waits for g and consumes it unless an earlier group failed.
	finish := func(g *group, failed bool) error {
		<-g.done
		err := g.err
		if err == nil && !failed {
			err = consume(g)
		}
		free <- g
		return err
	}
	var err error
	for err == nil {
		if len(queue) == depth {
			err = finish(queue[0], false)
			queue = queue[1:]
			continue
		}
		g := get()
		g.err, g.done = nil, make(chan struct{})
		var more bool
		if more, err = produce(g); !more || err != nil {
			free <- g
			break
		}
		jobs <- g
		queue = append(queue, g)
	}
	close(jobs)
	for _, g := range queue {
		if e := finish(g, err != nil); err == nil {
			err = e
		}
	}
	wg.Wait()
	for range allocated {
		g := <-free
		clear(g.in)
		clear(g.out)
	}
	return err
}

// Encrypt reads plaintext from src until EOF and writes it to dst as a protected file bound to
// path, encrypting on every core. It returns the plaintext size. Memory use does not depend on
// the size of the file.
func Encrypt(dst Storage, src io.Reader, kdk Key, path string, opts *Options) (int64, error) {
	f, err := Create(dst, kdk, path, opts)
	if err != nil {
		return 0, err
	}
	defer f.wipe()
	n, err := io.ReadFull(src, f.meta.data[:])
	f.meta.size = int64(n)
	eof := err == io.EOF || err == io.ErrUnexpectedEOF
	if err != nil && !eof {
		return 0, err
	}
	var next int64 // the next group's MHT node
	var keys [dataPerMHT * KeySize]byte
	produce := func(g *group) (bool, error) {
		if eof {
			return false, nil
		}
		n, err := io.ReadFull(src, g.in[:groupBytes])
		eof = err == io.EOF || err == io.ErrUnexpectedEOF
		if err != nil && !eof {
			return false, err
		}
		if n == 0 {
			return false, nil
		}
		clear(g.in[n:]) // the last node is padded with zeros
		g.m, g.first, g.skip, g.bytes, g.nodes = next, next*dataPerMHT, 0, n, (n+NodeSize-1)/NodeSize
		next++
		if _, err := io.ReadFull(f.rand, keys[:g.nodes*KeySize]); err != nil {
			return false, fmt.Errorf("random keys: %w", err)
		}
		for i := range g.nodes {
			copy(g.slots[i].key[:], keys[i*KeySize:])
		}
		return true, nil
	}
	work := func(g *group) {
		for i := range g.nodes {
			s := &g.slots[i]
			off := i * NodeSize
			sealed := newGCM(&s.key).Seal(g.out[off:off], zeroIV[:], g.in[off:off+NodeSize], nil)
			copy(s.mac[:], sealed[NodeSize:])
		}
		_, g.err = dst.WriteAt(g.out[:g.nodes*NodeSize], dataOffset(g.first))
	}
	consume := func(g *group) error {
		parent, err := f.mht(g.m)
		if err != nil {
			return err
		}
		for i := range g.nodes {
			putSlot(dataSlot(parent.buf[:], i), g.slots[i])
		}
		parent.dirty = true
		f.meta.size += int64(g.bytes)
		return nil
	}
	if err := pipeline(groupBytes, produce, work, consume); err != nil {
		return 0, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.meta.size, f.flush()
}

// Decrypt writes the plaintext of the protected file of hostSize bytes in src to dst, decrypting
// on every core, and returns its size. Every node is checked; on an error, dst has received
// only checked plaintext, but not all of it. Memory use does not depend on the size of the file.
func Decrypt(dst io.Writer, src io.ReaderAt, hostSize int64, kdk Key, opts *Options) (int64, error) {
	return DecryptRange(dst, src, hostSize, kdk, 0, math.MaxInt64, opts)
}

// DecryptRange is Decrypt for the n bytes of plaintext at off, or those up to the end of the
// file: it writes them to dst and returns how many it wrote. It decrypts only the nodes that
// hold them (and reads the MHT nodes above those), on every core.
func DecryptRange(dst io.Writer, src io.ReaderAt, hostSize int64, kdk Key, off, n int64, opts *Options) (int64, error) {
	if off < 0 || n < 0 {
		return 0, fmt.Errorf("decrypt %d bytes at offset %d: negative length or offset", n, off)
	}
	f, err := Open(src, hostSize, kdk, opts)
	if err != nil {
		return 0, err
	}
	defer f.wipe()
	size := f.meta.size
	end := size
	if off >= size {
		return 0, nil
	}
	if n < size-off {
		end = off + n
	}
	var written int64
	if off < MetaDataSize {
		k, err := dst.Write(f.meta.data[off:min(end, MetaDataSize)])
		if written = int64(k); err != nil {
			return written, err
		}
	}
	if end <= MetaDataSize {
		return written, nil
	}
	// [lo, hi): the range in the plaintext that data nodes hold, which starts at MetaDataSize.
	lo, hi := max(off, MetaDataSize)-MetaDataSize, end-MetaDataSize
	next, stop := lo/NodeSize, (hi+NodeSize-1)/NodeSize // data nodes [next, stop) hold it
	produce := func(g *group) (bool, error) {
		if next >= stop {
			return false, nil
		}
		m := next / dataPerMHT
		parent, err := f.mht(m)
		if err != nil {
			return false, err
		}
		last := min((m+1)*dataPerMHT, stop)
		from, to := max(lo, next*NodeSize), min(hi, last*NodeSize)
		g.m, g.first, g.nodes = m, next, int(last-next)
		g.skip, g.bytes = int(from-next*NodeSize), int(to-from)
		for i := range g.nodes {
			g.slots[i] = getSlot(dataSlot(parent.buf[:], int(g.first%dataPerMHT)+i))
		}
		next = last
		return true, nil
	}
	work := func(g *group) {
		g.err = readRun(src, g.out, g.in, g.first, g.slots[:g.nodes])
	}
	consume := func(g *group) error {
		k, err := dst.Write(g.out[g.skip : g.skip+g.bytes])
		written += int64(k)
		return err
	}
	groupSize := int(min(groupBytes, (stop-next)*NodeSize))
	err = pipeline(groupSize, produce, work, consume)
	return written, err
}
