package pf

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// Format constants, as in Gramine's protected_files_format.h.
const (
	NodeSize     = 4096 // bytes in every node of the host file
	KeySize      = 16   // bytes in a key derivation key and in every node key
	MACSize      = 16   // bytes in a GCM tag
	NonceSize    = 32   // bytes in the metadata KDF nonce
	MaxPathLen   = 771  // longest path that can be bound to a file, in bytes
	MetaDataSize = 3072 // plaintext bytes held inside the metadata node

	// Version is the format major version that this package writes unless Options.Version
	// says 1. Gramine v1.9 reads versions 1 and 2; v1.0 to v1.8 read only version 1.
	Version = 2

	fileID          = "GRAFS_PF"
	pathFieldSize   = MaxPathLen + 1
	headerSizeV1    = 58
	headerSizeV2    = 59
	encMetaSize     = 3884 // encrypted part of the metadata node
	dataPerMHT      = 96   // data-node slots in an MHT node
	childrenPerMHT  = 32   // child-MHT slots in an MHT node
	slotSize        = KeySize + MACSize
	childSlotOffset = dataPerMHT * slotSize
)

// Key is a 16-byte key derivation key ("wrap key"), the one secret that protects a file.
type Key [KeySize]byte

// slot is a node's key and GCM tag, as stored in its parent.
type slot struct {
	key Key
	mac [MACSize]byte
}

// Header is the plaintext start of the metadata node: everything that can be read without the key.
type Header struct {
	Major, Minor uint8
	Nonce        [NonceSize]byte // KDF nonce, fresh on every write
	MAC          [MACSize]byte   // GCM tag of the encrypted metadata
	Flags        uint8           // feature flags (version 2 only); bit 0 marks a pending write
}

// parseHeader checks node 0's magic and version and returns its header and encrypted part.
func parseHeader(node []byte) (Header, []byte, error) {
	var h Header
	if !bytes.Equal(node[:len(fileID)], []byte(fileID)) {
		return h, nil, fmt.Errorf("%w: no GRAFS_PF magic", ErrNotProtected)
	}
	h.Major, h.Minor = node[8], node[9]
	copy(h.Nonce[:], node[10:42])
	copy(h.MAC[:], node[42:58])
	hs := headerSize(h.Major)
	if hs == 0 {
		return h, nil, fmt.Errorf("%w %d.%d (this reader knows 1 and 2)", ErrVersion, h.Major, h.Minor)
	}
	if h.Major == 2 {
		h.Flags = node[58]
	}
	return h, node[hs : hs+encMetaSize], nil
}

// putHeader writes h at the start of node, whose encrypted part is in place: the feature flags
// byte of version 2 is where version 1's encrypted part starts.
func putHeader(node []byte, h *Header) {
	copy(node, fileID)
	node[8], node[9] = h.Major, h.Minor
	copy(node[10:42], h.Nonce[:])
	copy(node[42:58], h.MAC[:])
	if h.Major == 2 {
		node[58] = h.Flags
	}
}

// headerSize returns the size of the plaintext header of format version major, where the
// encrypted part starts, or 0 for a version this package does not know. Version 1 lacks the
// feature flags byte; nothing else differs, so Gramine v1.9 reads version 1 by moving the
// encrypted part one byte on.
func headerSize(major uint8) int {
	switch major {
	case 1:
		return headerSizeV1
	case 2:
		return headerSizeV2
	}
	return 0
}

// metadata is the decrypted part of the metadata node.
type metadata struct {
	path    string
	size    int64
	rootKey Key
	rootMAC [MACSize]byte
	data    [MetaDataSize]byte
}

func (m *metadata) marshal(b []byte) {
	clear(b[:encMetaSize])
	copy(b, m.path)
	binary.LittleEndian.PutUint64(b[pathFieldSize:], uint64(m.size))
	copy(b[pathFieldSize+8:], m.rootKey[:])
	copy(b[pathFieldSize+24:], m.rootMAC[:])
	copy(b[pathFieldSize+40:], m.data[:])
}

func (m *metadata) unmarshal(b []byte) error {
	end := bytes.IndexByte(b[:pathFieldSize], 0)
	if end < 0 {
		return fmt.Errorf("%w: the metadata authenticates but its path is not NUL-terminated", ErrDamaged)
	}
	m.path = string(b[:end])
	size := binary.LittleEndian.Uint64(b[pathFieldSize:])
	if size > maxFileSize {
		return fmt.Errorf("%w: the metadata authenticates but its file size %d is out of range", ErrDamaged, size)
	}
	m.size = int64(size)
	copy(m.rootKey[:], b[pathFieldSize+8:])
	copy(m.rootMAC[:], b[pathFieldSize+24:])
	copy(m.data[:], b[pathFieldSize+40:])
	return nil
}

// maxFileSize keeps every host offset within an int64.
const maxFileSize = 1 << 60

// dataNodes returns the number of data nodes in a file of size bytes.
func dataNodes(size int64) int64 {
	if size <= MetaDataSize {
		return 0
	}
	return (size - MetaDataSize + NodeSize - 1) / NodeSize
}

// mhtNodes returns the number of MHT nodes in a file of size bytes.
func mhtNodes(size int64) int64 {
	return (dataNodes(size) + dataPerMHT - 1) / dataPerMHT
}

// HostSize returns the size of the protected file that holds size bytes of plaintext.
func HostSize(size int64) int64 {
	return (1 + dataNodes(size) + mhtNodes(size)) * NodeSize
}

// dataOffset returns the host offset of data node d.
func dataOffset(d int64) int64 { return (d + 2 + d/dataPerMHT) * NodeSize }

// mhtOffset returns the host offset of MHT node m.
func mhtOffset(m int64) int64 { return (1 + m*(dataPerMHT+1)) * NodeSize }

// mhtParent returns the parent of MHT node m > 0 and the child slot that m occupies in it.
func mhtParent(m int64) (parent int64, index int) {
	return (m - 1) / childrenPerMHT, int((m - 1) % childrenPerMHT)
}

func getSlot(b []byte) slot {
	var s slot
	copy(s.key[:], b)
	copy(s.mac[:], b[KeySize:])
	return s
}

func putSlot(b []byte, s slot) {
	copy(b, s.key[:])
	copy(b[KeySize:], s.mac[:])
}

// dataSlot and childSlot locate slots inside a decrypted MHT node.
func dataSlot(mht []byte, i int) []byte { return mht[i*slotSize : (i+1)*slotSize] }
func childSlot(mht []byte, i int) []byte {
	return mht[childSlotOffset+i*slotSize : childSlotOffset+(i+1)*slotSize]
}
