package encfs

import (
	"bytes"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ppml/ppml/pf"
)

// BenchmarkSequentialRead reads a large protected file from start to end through encfs, with the
// kernel's cache of its plaintext dropped before each pass (its ciphertext stays in the host's
// page cache), and the same plaintext as a plain file from the page cache: its yardstick. It
// reports both in MB/s, their ratio, and the CPU time that a gigabyte read through encfs costs
// this process (reader and server together), which a busy machine disturbs less than MB/s.
// ENCFS_BENCH_MB sets the size (default 256).
func BenchmarkSequentialRead(b *testing.B) {
	size := 256 << 20
	if mb, err := strconv.Atoi(os.Getenv("ENCFS_BENCH_MB")); err == nil && mb > 0 {
		size = mb << 20
	}
	dir := b.TempDir()
	host := filepath.Join(dir, "host")
	if err := os.Mkdir(host, 0o755); err != nil {
		b.Fatal(err)
	}
	plain := make([]byte, size)
	rand.NewChaCha8([32]byte{1}).Read(plain)
	want := sha256.Sum256(plain)
	plainPath := filepath.Join(dir, "plain.bin")
	if err := os.WriteFile(plainPath, plain, 0o644); err != nil {
		b.Fatal(err)
	}
	hf, err := os.Create(filepath.Join(host, "model.bin"))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := pf.Encrypt(hf, bytes.NewReader(plain), testKey, "model.bin", nil); err != nil {
		b.Fatal(err)
	}
	hf.Close()
	plain = nil
	mnt, _ := mount(b, host, testKey, Options{})
	encPath := filepath.Join(mnt, "model.bin")

	buf := make([]byte, 1<<20)
	// read reads the file at p from start to end, hashing what it reads into h if h is set. It
	// returns the time it took and the CPU time this process spent meanwhile.
	read := func(p string, dropCache bool, h io.Writer) (wall, cpu time.Duration) {
		f, err := os.Open(p)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		if dropCache {
			if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
				b.Fatal(err)
			}
		}
		var before, after unix.Rusage
		unix.Getrusage(unix.RUSAGE_SELF, &before)
		start := time.Now()
		n := 0
		for {
			got, err := f.Read(buf)
			n += got
			if h != nil {
				h.Write(buf[:got])
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
		}
		wall = time.Since(start)
		unix.Getrusage(unix.RUSAGE_SELF, &after)
		if n != size {
			b.Fatalf("read %d bytes of %s, want %d", n, p, size)
		}
		cpu = time.Duration(after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano())
		return wall, cpu
	}
	h := sha256.New()
	read(encPath, true, h)
	if !bytes.Equal(h.Sum(nil), want[:]) {
		b.Fatal("encfs reads other bytes than were encrypted")
	}
	read(plainPath, false, nil) // into the page cache

	var enc, encCPU, yard time.Duration
	b.ResetTimer()
	for range b.N {
		wall, cpu := read(encPath, true, nil)
		enc += wall
		encCPU += cpu
		wall, _ = read(plainPath, false, nil)
		yard += wall
	}
	b.StopTimer()
	gb := float64(size) * float64(b.N) / 1e9
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(gb*1e3/enc.Seconds(), "encfs-MB/s")
	b.ReportMetric(gb*1e3/yard.Seconds(), "pagecache-MB/s")
	b.ReportMetric(yard.Seconds()/enc.Seconds(), "encfs/pagecache")
	b.ReportMetric(encCPU.Seconds()/gb, "encfs-cpu-s/GB")
}
