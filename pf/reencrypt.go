package pf

import (
	"errors"
	"io"
)

// errStopped ends the decryption of Reencrypt when the encryption failed.
var errStopped = errors.New("re-encryption stopped")

// Reencrypt writes to dst the protected file of hostSize bytes in src, which oldKey opens,
// encrypted under newKey: the same plaintext, bound to the same path, in the format of src
// unless opts.Version names one. Every node of src is checked as it is read, and both halves run
// on every core, the plaintext passing between them in memory only. It returns the plaintext
// size. A wrong oldKey is ErrKey before dst is touched; after any other error, dst holds no
// usable file.
func Reencrypt(dst Storage, src io.ReaderAt, hostSize int64, oldKey, newKey Key, opts *Options) (int64, error) {
	f, err := Open(src, hostSize, oldKey, nil)
	if err != nil {
		return 0, err
	}
	out := Options{Version: f.header.Major}
	path := f.meta.path
	f.wipe()
	if opts != nil {
		out.Rand = opts.Rand
		if opts.Version != 0 {
			out.Version = opts.Version
		}
	}
	pr, pw := io.Pipe()
	decrypted := make(chan error, 1)
	go func() {
		_, err := Decrypt(pw, src, hostSize, oldKey, nil)
		pw.CloseWithError(err) // nil: the end of the plaintext
		decrypted <- err
	}()
	n, err := Encrypt(dst, pr, newKey, path, &out)
	pr.CloseWithError(errStopped)
	if derr := <-decrypted; derr != nil && !errors.Is(derr, errStopped) {
		return n, derr // the cause, which Encrypt saw as a failed read
	}
	return n, err
}
