package pf

import (
	"io"
	"slices"
	"sync"
)

// memStorage is an in-memory Storage.
type memStorage struct {
	mu sync.Mutex
	b  []byte
}

func (s *memStorage) ReadAt(p []byte, off int64) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if off >= int64(len(s.b)) {
		return 0, io.EOF
	}
	n := copy(p, s.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (s *memStorage) WriteAt(p []byte, off int64) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if end := int(off) + len(p); end > len(s.b) {
		old := len(s.b)
		s.b = slices.Grow(s.b, end-old)[:end]
		clear(s.b[old:])
	}
	return copy(s.b[off:], p), nil
}

func (s *memStorage) Truncate(size int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if size <= int64(len(s.b)) {
		s.b = s.b[:size]
	} else {
		s.b = append(s.b, make([]byte, size-int64(len(s.b)))...)
	}
	return nil
}

func (s *memStorage) size() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return int64(len(s.b))
}
