package pf

import (
	"errors"
	"fmt"
)

// Errors that say what is wrong with a protected file. They are wrapped with details; test for
// them with errors.Is.
var (
	// ErrNotProtected: the file is not a protected file (no magic, or a size that is not a
	// multiple of 4096 bytes).
	ErrNotProtected = errors.New("not a protected file")
	// ErrVersion: the format version is not one this package reads, or Options.Version is not
	// one it writes.
	ErrVersion = errors.New("unsupported protected-file version")
	// ErrKey: the metadata does not decrypt: the key is wrong or the metadata node is damaged.
	ErrKey = errors.New("wrong key or damaged metadata")
	// ErrPath: the path bound into the file is not the one expected.
	ErrPath = errors.New("path mismatch")
	// ErrDamaged: a node failed its integrity check.
	ErrDamaged = errors.New("integrity check failed (file damaged or tampered with)")
	// ErrTruncated: the host file is shorter than its metadata says.
	ErrTruncated = errors.New("file truncated")
	// ErrReadOnly: a write to a file opened without writable storage.
	ErrReadOnly = errors.New("file opened read-only")
	// ErrClosed: use of a closed file.
	ErrClosed = errors.New("file closed")
)

// NodeError reports a node of the file that could not be read or failed its integrity check.
type NodeError struct {
	Kind   string // "data" or "MHT"
	Index  int64  // the node's number among the nodes of its kind
	Offset int64  // the node's byte offset in the host file
	Err    error  // ErrDamaged, ErrTruncated, or the storage's error
}

func (e *NodeError) Error() string {
	return fmt.Sprintf("%s node %d (host offset %d): %v", e.Kind, e.Index, e.Offset, e.Err)
}

func (e *NodeError) Unwrap() error { return e.Err }
