package pf

import (
	"fmt"
	"io"
)

// Info is what can be told about a protected file without its key.
type Info struct {
	Header
	HostSize int64
	// MinSize and MaxSize bound the plaintext size, from the host size alone. A file whose
	// host file was not truncated after shrinking (as gramine-sgx-pf-crypt leaves it) may be
	// smaller than MinSize.
	MinSize, MaxSize int64
}

// Inspect reads the plaintext header of the protected file of hostSize bytes in r.
func Inspect(r io.ReaderAt, hostSize int64) (Info, error) {
	info := Info{HostSize: hostSize}
	if hostSize == 0 || hostSize%NodeSize != 0 {
		return info, fmt.Errorf("%w: its size %d is not a positive multiple of %d", ErrNotProtected, hostSize, NodeSize)
	}
	var node [NodeSize]byte
	if _, err := r.ReadAt(node[:], 0); err != nil {
		return info, fmt.Errorf("read metadata node: %w", err)
	}
	h, _, err := parseHeader(node[:])
	info.Header = h
	if err != nil {
		return info, err
	}
	info.MinSize, info.MaxSize = sizeRange(hostSize / NodeSize)
	return info, nil
}

// sizeRange returns the plaintext sizes whose host file has exactly nodes nodes. A count that
// no size gives (one MHT node with no data node after it) yields the range of one node less.
func sizeRange(nodes int64) (lo, hi int64) {
	if nodes <= 2 {
		return 0, MetaDataSize
	}
	// nodes = 1 + d + ceil(d/96): find the largest d that fits.
	rest := nodes - 1
	d := rest - (rest+dataPerMHT)/(dataPerMHT+1)
	return MetaDataSize + (d-1)*NodeSize + 1, MetaDataSize + d*NodeSize
}
