package store

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"os"
)

// ReadMasterKey reads a master key file: exactly MasterKeySize raw bytes (not hex, no newline),
// as NewMasterKey writes. The file must be a regular file that neither group nor others may
// access (mode 0600 or stricter). The caller should clear the key when done with it.
func ReadMasterKey(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("master key %s: not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("master key %s: mode %04o lets group or others access it; run chmod 600 %s", path, perm, path)
	}
	if fi.Size() != MasterKeySize {
		return nil, fmt.Errorf("master key %s: the file holds %d bytes; a master key file holds exactly %d raw bytes (not hex)", path, fi.Size(), MasterKeySize)
	}
	key := make([]byte, MasterKeySize)
	if _, err := io.ReadFull(f, key); err != nil {
		clear(key)
		return nil, fmt.Errorf("master key %s: %w", path, err)
	}
	if bytes.Equal(key, make([]byte, MasterKeySize)) {
		return nil, fmt.Errorf("master key %s: all zero bytes; a master key must be random", path)
	}
	return key, nil
}

// NewMasterKey writes a new random master key to a new file at path, mode 0600. It refuses to
// overwrite an existing file.
func NewMasterKey(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("new master key: %w", err)
	}
	key := make([]byte, MasterKeySize)
	defer clear(key)
	rand.Read(key) // never fails
	_, err = f.Write(key)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("new master key: %w", err)
	}
	return nil
}
