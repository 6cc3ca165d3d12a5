// Command torchload measures torch.load of a PyTorch state dict (issue 5) read through encfs
// against the same file read directly, in the same run, the two alternating:
//
//   - it makes a state dict of about 233 MiB (torch.save of a seeded model's state_dict: four
//     3904×3904 Linear layers), encrypts it with package pf and mounts the folder that holds it
//     with encfs (read-only, as ppml run mounts a model);
//   - each run is a fresh /usr/bin/python3 that imports torch and then times torch.load of the
//     file alone (the import, 2 s here, costs the same on both sides and is left out);
//   - before each run through encfs, the kernel's cache of the mount's plaintext is dropped
//     (posix_fadvise DONTNEED), so every run goes through encfs; the plaintext file and the
//     protected file stay in the host's page cache, so that the figures compare encfs's work
//     (FUSE and decryption) with reading from memory, not disk speeds.
//
// It prints the medians and their ratio against the target (under 1.3×), and checks once that
// both loads give the same tensors. Run it as root (or wherever /dev/fuse may be mounted):
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
	runs := flag.Int("runs", 10, "runs of each, natively and through encfs")
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
	enc := filepath.Join(mnt, "model.pt")

	torch, err := output(exec.Command(python, "-c", "import torch; print(torch.__version__)"))
	if err != nil {
		return err
	}
	fmt.Printf("machine: %d cores; torch %s; state dict %.1f MiB; %d runs of each, alternating\n",
		runtime.NumCPU(), strings.TrimSpace(torch), float64(size)/(1<<20), runs)

	// One run of each first, not counted, which also checks that both give the same tensors.
	_, sumPlain, err := torchLoad(plain, "check")
	if err != nil {
		return err
	}
	_, sumEnc, err := torchLoad(enc, "check", "drop")
	if err != nil {
		return err
	}
	if sumPlain != sumEnc {
		return fmt.Errorf("the state dict loads differently through encfs:\n%s\n%s", sumPlain, sumEnc)
	}

	var native, through []time.Duration
	for i := range runs {
		for _, n := range []bool{i%2 == 0, i%2 != 0} {
			if n {
				d, _, err := torchLoad(plain, "-")
				if err != nil {
					return err
				}
				native = append(native, d)
			} else {
				d, _, err := torchLoad(enc, "-", "drop")
				if err != nil {
					return err
				}
				through = append(through, d)
			}
		}
	}
	mn, me := median(native), median(through)
	ratio := me.Seconds() / mn.Seconds()
	verdict := "met"
	if ratio >= maxRatio {
		verdict = "NOT met"
	}
	fmt.Printf("torch.load, plaintext file: median %v (%v–%v)\n", mn.Round(time.Millisecond),
		slices.Min(native).Round(time.Millisecond), slices.Max(native).Round(time.Millisecond))
	fmt.Printf("torch.load, through encfs:  median %v (%v–%v)\n", me.Round(time.Millisecond),
		slices.Min(through).Round(time.Millisecond), slices.Max(through).Round(time.Millisecond))
	fmt.Printf("ratio %.2f× (target under %.1f×: %s)\n", ratio, maxRatio, verdict)
	return nil
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
