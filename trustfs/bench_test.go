package trustfs

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkRead reads a 64 MiB trusted file: from the host directly (what a bind mount
// serves), checked whole as on its first open, and through trustfs after its check, each read
// verified chunk by chunk (the kernel's cache of the file dropped before each pass, and the
// file twice the chunk cache).
func BenchmarkRead(b *testing.B) {
	const size = 2 * CacheChunks * ChunkSize
	good := content(8, size)
	host := hostFolder(b, map[string][]byte{"big": good})
	_, mnt, _ := mount(b, host, []Entry{trustedEntry("big", "big", good)})
	read := func(b *testing.B, p string) {
		b.SetBytes(size)
		for b.Loop() {
			f, err := os.Open(p)
			if err != nil {
				b.Fatal(err)
			}
			unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
			if n, err := io.Copy(io.Discard, f); err != nil || n != size {
				b.Fatalf("read %d bytes: %v", n, err)
			}
			f.Close()
		}
	}
	b.Run("host", func(b *testing.B) {
		read(b, filepath.Join(host, "big")) // the host's cache stays: only trustfs's is dropped
	})
	b.Run("check", func(b *testing.B) {
		f, err := os.Open(filepath.Join(host, "big"))
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		tg, err := newTagger()
		if err != nil {
			b.Fatal(err)
		}
		want := trustedEntry("", "", good).SHA256
		b.SetBytes(size)
		for b.Loop() {
			if _, whole, err := hashChunks(context.Background(), f, size, runtime.GOMAXPROCS(0), time.Minute, tagsOf(tg)); err != nil || whole != want {
				b.Fatalf("check: %v", err)
			}
		}
	})
	b.Run("trustfs", func(b *testing.B) {
		read(b, filepath.Join(mnt, "big"))
	})
}
