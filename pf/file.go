package pf

import (
	"cmp"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
)

// Storage holds the bytes of a protected file, usually an *os.File. ReadAt and WriteAt may be
// called from several goroutines at once, WriteAt at distinct offsets.
type Storage interface {
	io.ReaderAt
	io.WriterAt
	Truncate(size int64) error
}

// Options tune Open, Create, Encrypt and Decrypt. The zero value is ready to use.
type Options struct {
	// Rand is the source of node keys and KDF nonces; nil means crypto/rand.
	Rand io.Reader
	// CheckPath makes Open fail with ErrPath unless the bound path equals Path byte for byte.
	// Gramine compares against the normalized host path (see NormalizePath).
	CheckPath bool
	Path      string
	// Version is the format major version that Create and Encrypt write, and that a File from
	// Open writes when it flushes changes: 2 (the default, 0) for Gramine v1.9 and later, or 1
	// for Gramine v1.0 to v1.8, which refuse version 2. Open reads both whatever Version says,
	// and a file it opens keeps its version until a flush writes something.
	Version uint8
}

// version returns the format version to write.
func (o *Options) version() (uint8, error) {
	if o == nil || o.Version == 0 {
		return Version, nil
	}
	if headerSize(o.Version) == 0 {
		return 0, fmt.Errorf("%w %d: protected files are written in version 1 (for Gramine v1.0 to v1.8) or 2 (for Gramine v1.9 and later)", ErrVersion, o.Version)
	}
	return o.Version, nil
}

func (o *Options) rand() io.Reader {
	if o == nil || o.Rand == nil {
		return rand.Reader
	}
	return o.Rand
}

// File is an open protected file with random access. Decrypted nodes are cached (at most
// 256 of them); writes stay in memory until Flush or Close, or until the cache is full of
// changed nodes. A File is safe for concurrent use.
type File struct {
	mu       sync.Mutex
	r        io.ReaderAt
	w        Storage // nil when read-only
	kdk      Key
	rand     io.Reader
	header   Header
	version  uint8 // the format version that flushes write
	meta     metadata
	cache    nodeCache
	hostLen  int64 // current length of the storage
	diskData int64 // data nodes [0, diskData) are valid on storage; later ones are new
	diskMHT  int64 // likewise for MHT nodes
	changed  bool  // the metadata must be rewritten
	flushing bool
	scratch  [NodeSize + MACSize]byte
	err      error // sticky: a failed flush leaves the storage in an unknown state
}

// Create starts a new, empty protected file bound to path in s, truncating s. Nothing is written
// until Flush or Close.
func Create(s Storage, kdk Key, path string, opts *Options) (*File, error) {
	if err := checkPath(path); err != nil {
		return nil, err
	}
	version, err := opts.version()
	if err != nil {
		return nil, err
	}
	if err := s.Truncate(0); err != nil {
		return nil, err
	}
	f := &File{r: s, w: s, kdk: kdk, rand: opts.rand(), version: version, changed: true}
	f.header.Major = version
	f.meta.path = path
	return f, nil
}

// checkPath reports whether a path can be bound into a protected file.
func checkPath(path string) error {
	if len(path) > MaxPathLen {
		return fmt.Errorf("path is %d bytes long; protected files allow at most %d", len(path), MaxPathLen)
	}
	if strings.IndexByte(path, 0) >= 0 {
		return errors.New("path contains a NUL byte")
	}
	return nil
}

// Open opens the protected file of hostSize bytes in r. The file is writable when r is also a
// Storage. Open checks the metadata and the root MHT node; other nodes are checked as they are
// read.
func Open(r io.ReaderAt, hostSize int64, kdk Key, opts *Options) (*File, error) {
	if hostSize == 0 {
		return nil, fmt.Errorf("%w: the file is empty", ErrNotProtected)
	}
	if hostSize%NodeSize != 0 {
		return nil, fmt.Errorf("%w: its size %d is not a multiple of %d", ErrNotProtected, hostSize, NodeSize)
	}
	version, err := opts.version()
	if err != nil {
		return nil, err
	}
	f := &File{r: r, kdk: kdk, rand: opts.rand(), version: version, hostLen: hostSize}
	f.w, _ = r.(Storage)
	if err := f.readMetadata(); err != nil {
		return nil, err
	}
	if opts != nil && opts.CheckPath && f.meta.path != opts.Path {
		return nil, fmt.Errorf("%w: the file is bound to %q, not %q", ErrPath, f.meta.path, opts.Path)
	}
	if need := HostSize(f.meta.size); hostSize < need {
		return nil, fmt.Errorf("%w: it holds %d bytes of plaintext, which take %d bytes, but only %d are there",
			ErrTruncated, f.meta.size, need, hostSize)
	}
	f.diskData, f.diskMHT = dataNodes(f.meta.size), mhtNodes(f.meta.size)
	if f.diskMHT > 0 {
		if _, err := f.mht(0); err != nil {
			return nil, err
		}
	}
	return f, nil
}

func (f *File) readMetadata() error {
	buf := &f.scratch
	if _, err := f.r.ReadAt(buf[:NodeSize], 0); err != nil {
		return fmt.Errorf("read metadata node: %w", err)
	}
	h, enc, err := parseHeader(buf[:NodeSize])
	if err != nil {
		return err
	}
	f.header = h
	var plain [encMetaSize + MACSize]byte
	copy(plain[:], enc)
	mk := metadataKey(&f.kdk, &h.Nonce)
	if !open(&mk, &h.MAC, plain[:], encMetaSize) {
		return fmt.Errorf("%w: the metadata failed authentication", ErrKey)
	}
	err = f.meta.unmarshal(plain[:])
	clear(plain[:])
	return err
}

// Header returns the file's plaintext header as it was read (or last written).
func (f *File) Header() Header {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.header
}

// Path returns the path bound into the file.
func (f *File) Path() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.meta.path
}

// SetPath binds the file to a new path, as a rename inside Gramine does.
func (f *File) SetPath(path string) error {
	if err := checkPath(path); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.writable(); err != nil {
		return err
	}
	f.meta.path = path
	f.changed = true
	return nil
}

// Size returns the plaintext size.
func (f *File) Size() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.meta.size
}

// ReadAt reads plaintext at off. Like os.File, it returns io.EOF when it reads past the end.
func (f *File) ReadAt(p []byte, off int64) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if errors.Is(f.err, ErrClosed) {
		return 0, ErrClosed
	}
	if off < 0 {
		return 0, fmt.Errorf("read at %d: negative offset", off)
	}
	n := 0
	for n < len(p) && off < f.meta.size {
		if k := wholeNodes(off, min(int64(len(p)-n), f.meta.size-off)); k >= bulkNodes {
			got, err := f.readNodes(p[n:n+int(k)*NodeSize], (off-MetaDataSize)/NodeSize)
			n += int(got) * NodeSize
			off += got * NodeSize
			if err != nil {
				return n, err
			}
			continue
		}
		chunk, err := f.span(off, false)
		if err != nil {
			return n, err
		}
		c := copy(p[n:], chunk)
		n += c
		off += int64(c)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// wholeNodes returns how many whole data nodes the n bytes at off hold, if they start on a
// node's first byte, or 0.
func wholeNodes(off, n int64) int64 {
	if off < MetaDataSize || (off-MetaDataSize)%NodeSize != 0 {
		return 0
	}
	return n / NodeSize
}

// WriteAt writes plaintext at off, extending the file (with zeros in any gap) as needed.
func (f *File) WriteAt(p []byte, off int64) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.writable(); err != nil {
		return 0, err
	}
	if off < 0 || int64(len(p)) > maxFileSize-off {
		return 0, fmt.Errorf("write at %d of %d bytes is out of range", off, len(p))
	}
	if end := off + int64(len(p)); end > f.meta.size {
		if err := f.grow(end); err != nil {
			return 0, err
		}
	}
	n := 0
	for n < len(p) {
		chunk, err := f.span(off, true)
		if err != nil {
			return n, err
		}
		c := copy(chunk, p[n:])
		n += c
		off += int64(c)
	}
	return n, nil
}

// Truncate changes the plaintext size; new bytes read as zeros.
func (f *File) Truncate(size int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.writable(); err != nil {
		return err
	}
	if size < 0 || size > maxFileSize {
		return fmt.Errorf("truncate to %d bytes: size out of range", size)
	}
	if size >= f.meta.size {
		return f.grow(size)
	}
	// Zero the rest of the node that will hold the new end, so that stale bytes never come
	// back if the file grows again, then forget every node past it.
	if err := f.zeroFrom(size); err != nil {
		return err
	}
	f.meta.size = size
	nd, nm := dataNodes(size), mhtNodes(size)
	for _, n := range f.cache.all(func(n *node) bool {
		return n.id.mht && n.id.n >= nm || !n.id.mht && n.id.n >= nd
	}) {
		f.cache.remove(n)
	}
	f.diskData, f.diskMHT = min(f.diskData, nd), min(f.diskMHT, nm)
	f.changed = true
	return nil
}

// Flush encrypts and writes every change, leaving a consistent file on storage.
func (f *File) Flush() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.flush()
}

// Close flushes the file and wipes its keys and plaintext from memory.
func (f *File) Close() error {
	f.mu.Lock()
	if errors.Is(f.err, ErrClosed) {
		f.mu.Unlock()
		return ErrClosed
	}
	var err error
	if f.w != nil {
		err = f.flush()
	}
	f.mu.Unlock()
	f.wipe()
	return err
}

// wipe forgets the file's keys and plaintext without writing anything.
func (f *File) wipe() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, n := range f.cache.all(func(*node) bool { return true }) {
		f.cache.remove(n)
	}
	clear(f.kdk[:])
	clear(f.scratch[:])
	f.meta = metadata{}
	f.err = ErrClosed
}

func (f *File) writable() error {
	if f.err != nil {
		return f.err
	}
	if f.w == nil {
		return ErrReadOnly
	}
	return nil
}

// span returns the plaintext bytes from off to the end of the node holding off, or to the end
// of the file if that comes first. With write set, the node is marked changed.
func (f *File) span(off int64, write bool) ([]byte, error) {
	if f.err != nil {
		return nil, f.err
	}
	end := f.meta.size
	if off < MetaDataSize {
		if write {
			f.changed = true
		}
		return f.meta.data[off:min(end, MetaDataSize)], nil
	}
	d, in := (off-MetaDataSize)/NodeSize, (off-MetaDataSize)%NodeSize
	n, err := f.data(d)
	if err != nil {
		return nil, err
	}
	if write {
		n.dirty = true
	}
	return n.buf[in:min(NodeSize, in+end-off)], nil
}

// grow extends the file to size. It zeroes whatever stale bytes the node at the old end holds
// and adds the new nodes as changed zero nodes, one at a time, so that a flush on the way (when
// the cache is full) always writes a consistent file.
func (f *File) grow(size int64) error {
	if err := f.zeroFrom(f.meta.size); err != nil {
		return err
	}
	f.changed = true
	for d := dataNodes(f.meta.size); d < dataNodes(size); d++ {
		n, err := f.data(d)
		if err != nil {
			return err
		}
		n.dirty = true
		f.meta.size = min(size, MetaDataSize+(d+1)*NodeSize)
	}
	f.meta.size = size
	return nil
}

// zeroFrom zeroes the bytes from off to the end of the node holding off.
func (f *File) zeroFrom(off int64) error {
	if off < MetaDataSize {
		clear(f.meta.data[off:])
		return nil
	}
	in := (off - MetaDataSize) % NodeSize
	if in == 0 {
		return nil
	}
	n, err := f.data((off - MetaDataSize) / NodeSize)
	if err != nil {
		return err
	}
	clear(n.buf[in:NodeSize])
	n.dirty = true
	return nil
}

// data returns data node d, reading it from storage if it exists there. The node stays cached
// at least until the next call that adds a node.
func (f *File) data(d int64) (*node, error) {
	id := nodeID{n: d}
	if d >= f.diskData { // a new node, to be written
		return f.load(id, -1, -1, 0)
	}
	return f.load(id, d/dataPerMHT, int(d%dataPerMHT)*slotSize, dataOffset(d))
}

// mht returns MHT node m, reading it from storage if it exists there. The node stays cached at
// least until the next call that adds a node.
func (f *File) mht(m int64) (*node, error) {
	id := nodeID{mht: true, n: m}
	switch {
	case m >= f.diskMHT:
		return f.load(id, -1, -1, 0)
	case m == 0:
		return f.load(id, 0, -1, mhtOffset(0))
	}
	p, i := mhtParent(m)
	return f.load(id, p, childSlotOffset+i*slotSize, mhtOffset(m))
}

// load returns the cached node id or adds it: a new zero node when parent is -1, else the node
// at host offset off whose key and tag are at byte at of MHT node parent, or in the metadata
// when at is -1.
func (f *File) load(id nodeID, parent int64, at int, off int64) (*node, error) {
	for {
		if n := f.cache.get(id); n != nil {
			return n, nil
		}
		var s slot
		switch {
		case parent < 0:
		case at < 0:
			s = slot{key: f.meta.rootKey, mac: f.meta.rootMAC}
		default:
			p, err := f.mht(parent)
			if err != nil {
				return nil, err
			}
			s = getSlot(p.buf[at:])
		}
		// Making room may flush, which rewrites nodes and their slots: then look again.
		flushed, err := f.makeRoom()
		if err != nil {
			return nil, err
		}
		if flushed {
			continue
		}
		n := &node{id: id, dirty: parent < 0}
		if !n.dirty {
			if err := f.readNode(n, off, &s); err != nil {
				return nil, err
			}
		}
		f.cache.put(n)
		return n, nil
	}
}

func (f *File) readNode(n *node, off int64, s *slot) error {
	kind := "data"
	if n.id.mht {
		kind = "MHT"
	}
	fail := func(err error) error { return &NodeError{Kind: kind, Index: n.id.n, Offset: off, Err: err} }
	got, err := f.r.ReadAt(n.buf[:NodeSize], off)
	if got < NodeSize {
		if err == nil || err == io.EOF {
			err = ErrTruncated
		}
		return fail(err)
	}
	if !open(&s.key, &s.mac, n.buf[:], NodeSize) {
		clear(n.buf[:])
		return fail(ErrDamaged)
	}
	return nil
}

// makeRoom makes room in the cache for one more node: it drops clean nodes and, if every node
// is changed, flushes first. It reports whether it flushed.
func (f *File) makeRoom() (bool, error) {
	if f.flushing || f.cache.len() < cacheNodes {
		return false, nil
	}
	f.cache.evictClean(cacheNodes - 1)
	if f.cache.len() < cacheNodes {
		return false, nil
	}
	if err := f.flush(); err != nil {
		return false, err
	}
	f.cache.evictClean(cacheNodes - 1)
	return true, nil
}

// flush writes every changed node with a fresh key, children before parents, then the root
// MHT node and finally the metadata node under a fresh nonce.
func (f *File) flush() error {
	if f.err != nil {
		return f.err
	}
	dirty := f.cache.all(func(n *node) bool { return n.dirty })
	if len(dirty) == 0 && !f.changed {
		return nil
	}
	f.flushing = true
	err := f.writeNodes(dirty)
	f.flushing = false
	if err != nil {
		f.err = fmt.Errorf("flush failed, the file is in an unknown state: %w", err)
		return f.err
	}
	f.cache.evictClean(cacheNodes)
	return nil
}

func (f *File) writeNodes(dirty []*node) error {
	// Data nodes first, in order, so that an injected random source gives a repeatable file.
	slices.SortFunc(dirty, func(a, b *node) int { return cmp.Compare(a.id.n, b.id.n) })
	mhts := map[int64]bool{}
	for _, n := range dirty {
		if n.id.mht {
			mhts[n.id.n] = true
			continue
		}
		parent, err := f.mht(n.id.n / dataPerMHT)
		if err != nil {
			return err
		}
		s, err := f.writeNode(n, dataOffset(n.id.n))
		if err != nil {
			return err
		}
		putSlot(dataSlot(parent.buf[:], int(n.id.n%dataPerMHT)), s)
		parent.dirty = true
		mhts[parent.id.n] = true
	}
	// Then MHT nodes from the bottom up; every ancestor of a changed node changes too.
	for m := range mhts {
		for m > 0 {
			m, _ = mhtParent(m)
			mhts[m] = true
		}
	}
	order := make([]int64, 0, len(mhts))
	for m := range mhts {
		order = append(order, m)
	}
	slices.Sort(order)
	for _, m := range slices.Backward(order) {
		n, err := f.mht(m)
		if err != nil {
			return err
		}
		s, err := f.writeNode(n, mhtOffset(m))
		if err != nil {
			return err
		}
		if m == 0 {
			f.meta.rootKey, f.meta.rootMAC = s.key, s.mac
			continue
		}
		p, i := mhtParent(m)
		parent, err := f.mht(p)
		if err != nil {
			return err
		}
		putSlot(childSlot(parent.buf[:], i), s)
	}
	if f.meta.size <= MetaDataSize {
		f.meta.rootKey, f.meta.rootMAC = Key{}, [MACSize]byte{}
	}
	if err := f.writeMetadata(); err != nil {
		return err
	}
	f.diskData, f.diskMHT = dataNodes(f.meta.size), mhtNodes(f.meta.size)
	if want := HostSize(f.meta.size); f.hostLen > want {
		if err := f.w.Truncate(want); err != nil {
			return err
		}
		f.hostLen = want
	}
	f.changed = false
	return nil
}

// writeNode encrypts a copy of n under a fresh key, writes it at off and returns its slot.
func (f *File) writeNode(n *node, off int64) (slot, error) {
	var s slot
	if _, err := io.ReadFull(f.rand, s.key[:]); err != nil {
		return s, fmt.Errorf("random key: %w", err)
	}
	copy(f.scratch[:], n.buf[:NodeSize])
	s.mac = seal(&s.key, f.scratch[:], NodeSize)
	if err := f.writeAt(f.scratch[:NodeSize], off); err != nil {
		return s, err
	}
	n.dirty = false
	return s, nil
}

// writeMetadata writes the metadata node in f.version, under a fresh nonce.
func (f *File) writeMetadata() error {
	h := &f.header
	h.Major, h.Minor, h.Flags = f.version, 0, 0
	if _, err := io.ReadFull(f.rand, h.Nonce[:]); err != nil {
		return fmt.Errorf("random nonce: %w", err)
	}
	var node [NodeSize + MACSize]byte
	hs := headerSize(h.Major)
	enc := node[hs:]
	f.meta.marshal(enc)
	mk := metadataKey(&f.kdk, &h.Nonce)
	h.MAC = seal(&mk, enc, encMetaSize)
	clear(node[hs+encMetaSize:]) // the tag seal appended: padding is zero
	putHeader(node[:], h)
	return f.writeAt(node[:NodeSize], 0)
}

func (f *File) writeAt(b []byte, off int64) error {
	if _, err := f.w.WriteAt(b, off); err != nil {
		return err
	}
	f.hostLen = max(f.hostLen, off+int64(len(b)))
	return nil
}
