// Command torchload measures torch.load of a PyTorch state dict (issue 5) read through encfs
// against the same file read directly and, as the peer yardstick, through gocryptfs (Debian's
// package), in the same run, the three alternating:
//
//   - it makes a state dict of about 233 MiB (torch.save of a seeded model's state_dict: four
//     3904×3904 Linear layers), encrypts it with package pf and mounts the folder that holds it
//     with encfs (read-only, as ppml run mounts a model);
//   - each run is a fresh /usr/bin/python3 that imports torch and then times torch.load of the
//     file alone (the import, 2 s here, costs the same on both sides and is left out);
//   - it writes the same file through a read-write gocryptfs mount (a fresh cipher folder with
//     gocryptfs's defaults: AES-256-GCM, 4 KiB blocks) and mounts that folder again read-only;
//   - before each run through a FUSE mount (encfs or gocryptfs), the kernel's cache of the
//     mount's plaintext is dropped (posix_fadvise DONTNEED), so every run goes through the
//     filesystem; the plaintext file and the ciphertext files stay in the host's page cache, so
//     that the figures compare the filesystems' work (FUSE and decryption) with reading from
//     memory, not disk speeds.
//
// It prints the medians and their ratios: encfs against the plaintext file (the target: under
// 1.3×) and against gocryptfs, and checks once that every load gives the same tensors. Without
// gocryptfs on the PATH it says so and measures the other two. Run it as root (or wherever
// /dev/fuse may be mounted):
//
//	go run ./bench/torchload [-runs 10] [-dir /tmp]
package main

import (
	"bytes"
	"crypto/rand"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ppml/ppml/encfs"
	"github.com/ppml/ppml/pf"
)

// maxRatio is issue 5's target: torch.load through encfs within 1.3× of the plaintext file.
const maxRatio = 1.3

const python = "/usr/bin/python3"

// makeModel saves the state dict of a seeded model to argv[1].
const makeModel = `
import sys, torch
torch.manual_seed(5)
model = torch.nn.Sequential(*[torch.nn.Linear(3904, 3904) for _ in range(4)])
torch.save(model.state_dict(), sys.argv[1])
`

// load times torch.load of argv[1] and prints the seconds it took; with a second argument
// "check", it then prints a checksum of the tensors. A third argument "drop" first drops the
// kernel's cache of the file.
const load = `
import os, sys, time, torch
if "drop" in sys.argv[2:]:
    fd = os.open(sys.argv[1], os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)
t = time.perf_counter()
sd = torch.load(sys.argv[1])
print(time.perf_counter() - t)
if "check" in sys.argv[2:]:
    print(" ".join("%s:%r" % (k, float(v.double().sum())) for k, v in sd.items()))
`

func main() {
	runs := flag.Int("runs", 10, "runs of each way: the plaintext file, encfs and gocryptfs")
	dir := flag.String("dir", "", "where to make the work folder (default: the temporary folder)")
	flag.Parse()
	if err := run(*runs, *dir); err != nil {
		fmt.Fprintln(os.Stderr, "bench/torchload:", err)
		os.Exit(1)
	}
}

func run(runs int, dir string) error {
	work, err := os.MkdirTemp(dir, "ppml-bench-torchload-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	plainDir, host, mnt := filepath.Join(work, "plain"), filepath.Join(work, "host"), filepath.Join(work, "mnt")
	for _, d := range []string{plainDir, host, mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return err
		}
	}
	plain := filepath.Join(plainDir, "model.pt")
	if _, err := output(exec.Command(python, "-c", makeModel, plain)); err != nil {
		return err
	}
	var key pf.Key
	rand.Read(key[:])
	size, err := encrypt(plain, filepath.Join(host, "model.pt"), key)
	if err != nil {
		return err
	}
	s, err := encfs.Mount(mnt, host, key, encfs.Options{ReadOnly: true})
	if err != nil {
		return err
	}
	defer s.Unmount()
	ways := []*way{
		{name: "plaintext file", path: plain},
		{name: "through encfs", path: filepath.Join(mnt, "model.pt"), drop: true},
	}
	if _, err := exec.LookPath("gocryptfs"); err != nil {
		fmt.Println("gocryptfs is not installed (apt-get install gocryptfs): measuring without the peer yardstick")
	} else {
		gmnt, unmount, err := gocryptfsCopy(work, plain)
		if err != nil {
			return err
		}
		defer unmount()
		ways = append(ways, &way{name: "through gocryptfs", path: filepath.Join(gmnt, "model.pt"), drop: true})
	}

	torch, err := output(exec.Command(python, "-c", "import torch; print(torch.__version__)"))
	if err != nil {
		return err
	}
	fmt.Printf("machine: %d cores; torch %s; state dict %.1f MiB; %d runs of each, alternating\n",
		runtime.NumCPU(), strings.TrimSpace(torch), float64(size)/(1<<20), runs)

	// One run of each first, not counted, which also checks that all give the same tensors.
	var sums []string
	for _, w := range ways {
		_, sum, err := w.load("check")
		if err != nil {
			return err
		}
		sums = append(sums, sum)
		if sum != sums[0] {
			return fmt.Errorf("the state dict loads differently %s:\n%s\n%s", w.name, sums[0], sum)
		}
	}

	for i := range runs {
		for j := range ways {
			w := ways[(i+j)%len(ways)] // each goes first in turn
			d, _, err := w.load("-")
			if err != nil {
				return err
			}
			w.times = append(w.times, d)
		}
	}
	for _, w := range ways {
		fmt.Printf("torch.load, %-18s median %v (%v–%v)\n", w.name+":", w.median().Round(time.Millisecond),
			slices.Min(w.times).Round(time.Millisecond), slices.Max(w.times).Round(time.Millisecond))
	}
	ratio := ways[1].median().Seconds() / ways[0].median().Seconds()
	verdict := "met"
	if ratio >= maxRatio {
		verdict = "NOT met"
	}
	fmt.Printf("encfs against the plaintext file: %.2f× (target under %.1f×: %s)\n", ratio, maxRatio, verdict)
	if len(ways) == 3 {
		g := ways[2].median().Seconds()
		fmt.Printf("gocryptfs against the plaintext file: %.2f×; encfs against gocryptfs: %.2f×\n",
			g/ways[0].median().Seconds(), ways[1].median().Seconds()/g)
	}
	return nil
}

// way is one way of reading the state dict, and the times torch.load took that way.
type way struct {
	name  string
	path  string
	drop  bool // drop the kernel's cache of the file before each load: it is on a FUSE mount
	times []time.Duration
}

func (w *way) load(mode string) (time.Duration, string, error) {
	args := []string{mode}
	if w.drop {
		args = append(args, "drop")
	}
	return torchLoad(w.path, args...)
}

func (w *way) median() time.Duration { return median(w.times) }

// gocryptfsCopy makes a gocryptfs cipher folder in work holding a copy of the file plain, written
// through a read-write mount, mounts it again read-only, and returns the mount point and how to
// unmount it.
func gocryptfsCopy(work, plain string) (string, func(), error) {
	cipher, mnt := filepath.Join(work, "gocryptfs-cipher"), filepath.Join(work, "gocryptfs-mnt")
	pass := filepath.Join(work, "gocryptfs-pass")
	for _, d := range []string{cipher, mnt} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return "", nil, err
		}
	}
	var pw [16]byte
	rand.Read(pw[:])
	if err := os.WriteFile(pass, []byte(fmt.Sprintf("%x\n", pw)), 0o600); err != nil {
		return "", nil, err
	}
	unmount := func() { exec.Command("fusermount", "-u", mnt).Run() }
	gocryptfs := func(args ...string) error {
		_, err := output(exec.Command("gocryptfs", append([]string{"-q", "-passfile", pass}, args...)...))
		return err
	}
	if err := gocryptfs("-init", "-scryptn", "10", cipher); err != nil {
		return "", nil, err
	}
	if err := gocryptfs(cipher, mnt); err != nil {
		return "", nil, err
	}
	_, err := output(exec.Command("cp", plain, filepath.Join(mnt, "model.pt")))
	unmount()
	if err != nil {
		return "", nil, err
	}
	if err := gocryptfs("-ro", cipher, mnt); err != nil {
		return "", nil, err
	}
	return mnt, unmount, nil
}

// encrypt writes the plaintext file at from to a protected file at to, bound to its base name
// (as encfs binds the files of a mount without a prefix), and returns the plaintext size.
func encrypt(from, to string, key pf.Key) (int64, error) {
	src, err := os.Open(from)
	if err != nil {
		return 0, err
	}
	defer src.Close()
	dst, err := os.Create(to)
	if err != nil {
		return 0, err
	}
	n, err := pf.Encrypt(dst, src, key, filepath.Base(to), nil)
	if err != nil {
		dst.Close()
		return 0, err
	}
	return n, dst.Close()
}

// torchLoad runs the load script on path and returns the time torch.load took and the rest of
// its output.
func torchLoad(path string, args ...string) (time.Duration, string, error) {
	out, err := output(exec.Command(python, append([]string{"-c", load, path}, args...)...))
	if err != nil {
		return 0, "", err
	}
	first, rest, _ := strings.Cut(out, "\n")
	sec, err := strconv.ParseFloat(strings.TrimSpace(first), 64)
	if err != nil {
		return 0, "", fmt.Errorf("torch.load of %s printed %q", path, first)
	}
	return time.Duration(sec * float64(time.Second)), rest, nil
}

func output(cmd *exec.Cmd) (string, error) {
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s: %w\n%s", strings.Join(cmd.Args[:min(2, len(cmd.Args))], " "), err, stderr.String())
	}
	return string(out), nil
}

func median(d []time.Duration) time.Duration {
	s := slices.Sorted(slices.Values(d))
	return s[len(s)/2]
}
