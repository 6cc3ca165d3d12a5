// Command pf measures ppml's protected-file encryption and decryption against its yardsticks, in
// the same run:
//
//   - the ppml binary converting a file held in memory (tmpfs), with its peak memory;
//   - cp copying the same file within tmpfs, which does no cryptography at all: on a virtual
//     machine whose fresh memory pages are slow to fault in, it bounds what any tool writing a
//     new file can do;
//   - openssl's raw AES-128-GCM on 4 KiB blocks over every core
//     (openssl speed -evp aes-128-gcm -bytes 4096 -multi CORES);
//   - package pf converting between buffers already in memory, which is ppml's own speed with no
//     file system involved.
//
// Runs of ppml and cp alternate, so that each sees the machine in the same state.
//
//	go run ./bench/pf [-ppml bin/ppml] [-size 1024] [-runs 5] [-dir /dev/shm]
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ppml/ppml/pf"
)

func main() {
	ppml := flag.String("ppml", "bin/ppml", "the ppml binary to measure")
	sizeMiB := flag.Int("size", 1024, "plaintext size in MiB")
	runs := flag.Int("runs", 5, "runs of each measurement")
	dir := flag.String("dir", "/dev/shm", "a tmpfs folder for the files")
	flag.Parse()
	if err := run(*ppml, int64(*sizeMiB)<<20, *runs, *dir); err != nil {
		fmt.Fprintln(os.Stderr, "bench/pf:", err)
		os.Exit(1)
	}
}

// Targets from the protected-files issue.
const (
	minGBps     = 1.5
	minRawRatio = 0.25
	maxPeakMiB  = 100
)

// sample is one measurement of one command.
type sample struct {
	wall    time.Duration
	peakKiB int64
}

// series is the samples of one measurement.
type series []sample

func (s series) best() time.Duration   { return slices.Min(s.walls()) }
func (s series) median() time.Duration { w := s.walls(); slices.Sort(w); return w[len(w)/2] }
func (s series) walls() []time.Duration {
	var w []time.Duration
	for _, x := range s {
		w = append(w, x.wall)
	}
	return w
}
func (s series) peakMiB() float64 {
	var peak int64
	for _, x := range s {
		peak = max(peak, x.peakKiB)
	}
	return float64(peak) / 1024
}

func run(ppml string, size int64, runs int, dir string) error {
	work, err := os.MkdirTemp(dir, "ppml-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	plain, enc, dec, cpy, key := filepath.Join(work, "plain"), filepath.Join(work, "enc"), filepath.Join(work, "dec"), filepath.Join(work, "copy"), filepath.Join(work, "key")
	if err := writeRandom(plain, size); err != nil {
		return err
	}
	if _, err := measure(ppml, "pf", "gen-key", "-w", key); err != nil {
		return err
	}
	cores := runtime.NumCPU()
	fmt.Printf("machine: %d cores; file: %d MiB in %s; %d runs of each\n\n", cores, size>>20, dir, runs)

	var cp, encrypt, decrypt series
	for range runs {
		for _, m := range []struct {
			s    *series
			out  string
			args []string
		}{
			{&cp, cpy, []string{"cp", plain, cpy}},
			{&encrypt, enc, []string{ppml, "pf", "encrypt", "-w", key, "-i", plain, "-o", enc}},
			{&decrypt, dec, []string{ppml, "pf", "decrypt", "-w", key, "-i", enc, "-o", dec}},
		} {
			os.Remove(m.out)
			s, err := measure(m.args[0], m.args[1:]...)
			if err != nil {
				return err
			}
			*m.s = append(*m.s, s)
		}
	}
	if out, err := exec.Command("cmp", plain, dec).CombinedOutput(); err != nil {
		return fmt.Errorf("decrypted file differs: %s", out)
	}
	memEnc, memDec, err := inMemory(plain, size)
	if err != nil {
		return err
	}
	raw, err := opensslGCM(cores)
	if err != nil {
		return err
	}
	gbps := func(d time.Duration) float64 { return float64(size) / d.Seconds() / 1e9 }

	fmt.Printf("yardstick: openssl AES-128-GCM, 4 KiB blocks, %d processes: %.2f GB/s\n", cores, raw)
	fmt.Printf("yardstick: cp within tmpfs: best %.2f GB/s, median %.2f GB/s\n\n", gbps(cp.best()), gbps(cp.median()))
	fmt.Printf("%-22s %9s %9s %9s %10s %10s\n", "", "best GB/s", "median", "÷ raw", "÷ cp", "peak RSS")
	for _, r := range []struct {
		name string
		s    series
	}{{"ppml pf encrypt", encrypt}, {"ppml pf decrypt", decrypt}} {
		fmt.Printf("%-22s %9.2f %9.2f %9.2f %10.2f %6.1f MiB\n", r.name, gbps(r.s.best()), gbps(r.s.median()),
			gbps(r.s.best())/raw, cp.best().Seconds()/r.s.best().Seconds(), r.s.peakMiB())
	}
	for _, r := range []struct {
		name string
		d    time.Duration
	}{{"pf.Encrypt in memory", memEnc}, {"pf.Decrypt in memory", memDec}} {
		fmt.Printf("%-22s %9.2f %9s %9.2f\n", r.name, gbps(r.d), "", gbps(r.d)/raw)
	}

	fmt.Printf("\ntargets: >= %.1f GB/s and >= %.2f of raw each way, peak < %d MiB\n", minGBps, minRawRatio, maxPeakMiB)
	verdict := func(name string, g float64) {
		ok := g >= minGBps && g/raw >= minRawRatio
		fmt.Printf("  %-10s %5.2f GB/s, %.2f of raw: %s\n", name, g, g/raw, map[bool]string{true: "met", false: "MISSED"}[ok])
	}
	verdict("tmpfs enc", gbps(encrypt.best()))
	verdict("tmpfs dec", gbps(decrypt.best()))
	verdict("memory enc", gbps(memEnc))
	verdict("memory dec", gbps(memDec))
	fmt.Printf("  peak RSS   %.1f MiB: %s\n", max(encrypt.peakMiB(), decrypt.peakMiB()),
		map[bool]string{true: "met", false: "MISSED"}[max(encrypt.peakMiB(), decrypt.peakMiB()) < maxPeakMiB])
	return nil
}

// measure runs a command and returns its wall time and peak resident memory.
func measure(bin string, args ...string) (sample, error) {
	cmd := exec.Command(bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return sample{}, fmt.Errorf("%s %s: %v: %s", bin, strings.Join(args, " "), err, stderr.Bytes())
	}
	return sample{time.Since(start), cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss}, nil
}

// inMemory times pf.Encrypt and pf.Decrypt between buffers that are already in memory, best of
// three.
func inMemory(plainFile string, size int64) (enc, dec time.Duration, err error) {
	plain, err := os.ReadFile(plainFile)
	if err != nil {
		return 0, 0, err
	}
	var key pf.Key
	host := &buffer{b: make([]byte, pf.HostSize(size))}
	out := &buffer{b: make([]byte, size)}
	clear(host.b) // touch every page before timing
	clear(out.b)
	for range 3 {
		start := time.Now()
		if _, err := pf.Encrypt(host, bytes.NewReader(plain), key, "bench", nil); err != nil {
			return 0, 0, err
		}
		enc = minNonZero(enc, time.Since(start))
		start = time.Now()
		out.n = 0
		if _, err := pf.Decrypt(out, host, int64(len(host.b)), key, nil); err != nil {
			return 0, 0, err
		}
		dec = minNonZero(dec, time.Since(start))
	}
	if !bytes.Equal(out.b, plain) {
		return 0, 0, fmt.Errorf("in-memory round trip differs")
	}
	return enc, dec, nil
}

func minNonZero(a, b time.Duration) time.Duration {
	if a == 0 {
		return b
	}
	return min(a, b)
}

// buffer is a fixed, preallocated pf.Storage and io.Writer in memory.
type buffer struct {
	b []byte
	n int // where Write appends
}

func (b *buffer) ReadAt(p []byte, off int64) (int, error)  { return copy(p, b.b[off:]), nil }
func (b *buffer) WriteAt(p []byte, off int64) (int, error) { return copy(b.b[off:], p), nil }
func (b *buffer) Truncate(int64) error                     { return nil }
func (b *buffer) Write(p []byte) (int, error) {
	n := copy(b.b[b.n:], p)
	b.n += n
	return n, nil
}

func writeRandom(name string, size int64) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	rng := rand.NewChaCha8([32]byte{'p', 'p', 'm', 'l'})
	buf := make([]byte, 1<<20)
	for n := int64(0); n < size; n += int64(len(buf)) {
		rng.Read(buf)
		w.Write(buf[:min(int64(len(buf)), size-n)])
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return f.Close()
}

// opensslGCM returns openssl's AES-128-GCM speed on 4 KiB blocks over all cores, in GB/s.
func opensslGCM(cores int) (float64, error) {
	out, err := exec.Command("openssl", "speed", "-evp", "aes-128-gcm", "-bytes", "4096",
		"-multi", strconv.Itoa(cores), "-seconds", "3").Output()
	if err != nil {
		return 0, fmt.Errorf("openssl speed: %v (install openssl)", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 2 && strings.EqualFold(fields[0], "AES-128-GCM") {
			kbps, err := strconv.ParseFloat(strings.TrimSuffix(fields[1], "k"), 64)
			return kbps * 1000 / 1e9, err
		}
	}
	return 0, fmt.Errorf("openssl speed: no AES-128-GCM result in %q", out)
}
