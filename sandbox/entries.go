package sandbox

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/ppml/ppml/trustfs"
)

// entryTable is the trusted files' filesystem's entries as the sandbox process receives them,
// in a compact encoding of its own: gob, field by field and the hash byte by byte, took 100–200
// ms to encode and decode the 25,000 entries of a manifest that trusts PyTorch, against a few
// milliseconds for this one. For each entry: its Kind (a byte), Path and Host (each a uvarint
// length and the bytes) and, for a Trusted one, the 32 bytes of its SHA-256; the count first.
type entryTable []trustfs.Entry

// MarshalBinary encodes t (gob calls it).
func (t entryTable) MarshalBinary() ([]byte, error) {
	size := binary.MaxVarintLen64
	for _, e := range t {
		size += 1 + 2*binary.MaxVarintLen64 + len(e.Path) + len(e.Host) + len(e.SHA256)
	}
	b := binary.AppendUvarint(make([]byte, 0, size), uint64(len(t)))
	for _, e := range t {
		b = append(b, byte(e.Kind))
		b = binary.AppendUvarint(b, uint64(len(e.Path)))
		b = append(b, e.Path...)
		b = binary.AppendUvarint(b, uint64(len(e.Host)))
		b = append(b, e.Host...)
		if e.Kind == trustfs.Trusted {
			b = append(b, e.SHA256[:]...)
		}
	}
	return b, nil
}

var errEntries = errors.New("the trusted files' entries are truncated or malformed")

// UnmarshalBinary decodes what MarshalBinary encoded. The strings of every entry share one
// allocation: a copy of b.
func (t *entryTable) UnmarshalBinary(b []byte) error {
	s := string(b)
	n, pos := binary.Uvarint(b)
	if pos <= 0 || n > uint64(len(b)) { // an entry takes at least 3 bytes
		return errEntries
	}
	str := func() (string, bool) {
		l, k := binary.Uvarint(b[pos:])
		if k <= 0 || l > uint64(len(b)-pos-k) {
			return "", false
		}
		pos += k
		v := s[pos : pos+int(l)]
		pos += int(l)
		return v, true
	}
	entries := make([]trustfs.Entry, n)
	for i := range entries {
		e := &entries[i]
		if pos >= len(b) {
			return errEntries
		}
		e.Kind = trustfs.Kind(b[pos])
		pos++
		if e.Kind > trustfs.File {
			return fmt.Errorf("trusted files' entry %d: unknown kind %d", i, e.Kind)
		}
		var ok1, ok2 bool
		e.Path, ok1 = str()
		if ok1 {
			e.Host, ok2 = str()
		}
		if !ok2 {
			return errEntries
		}
		if e.Kind == trustfs.Trusted {
			if len(b)-pos < len(e.SHA256) {
				return errEntries
			}
			pos += copy(e.SHA256[:], b[pos:])
		}
	}
	if pos != len(b) {
		return errEntries
	}
	*t = entries
	return nil
}
