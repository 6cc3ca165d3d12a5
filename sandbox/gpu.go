package sandbox

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/ppml/ppml/manifest"
)

// The NVIDIA device nodes a CUDA workload needs besides its GPUs' /dev/nvidiaN: the control
// device, unified memory, and the capabilities of MIG instances (a folder).
var nvidiaDevices = []string{"nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset"}

const nvidiaCaps = "nvidia-caps"

var gpuNode = regexp.MustCompile(`^nvidia([0-9]+)$`)

// gpuPlan is what ppml.gpus adds to a workload's view.
type gpuPlan struct {
	devices []string         // device nodes, relative to /dev
	mounts  []manifest.Mount // the driver's libraries, read-only, each at its host path
	files   []trustedFile    // the same libraries as trusted files, hashed now
}

// planGPUs finds, for a manifest with ppml.gpus, the NVIDIA device nodes in devDir (the host's
// /dev) and the driver's user-space libraries that ldconfig lists (ldconfig -p's output), and
// hashes the libraries: they are served as trusted files, checked against these hashes when
// the workload opens them.
func planGPUs(m *manifest.Manifest, devDir string, ldconfig []byte) (*gpuPlan, error) {
	if m.GPUs == 0 {
		return &gpuPlan{}, nil
	}
	want := "all"
	if m.GPUs != manifest.AllGPUs {
		want = strconv.Itoa(m.GPUs)
	}
	entries, err := os.ReadDir(devDir)
	if err != nil {
		return nil, fmt.Errorf("ppml.gpus: %w", err)
	}
	var gpus []int
	for _, e := range entries {
		if s := gpuNode.FindStringSubmatch(e.Name()); s != nil {
			n, _ := strconv.Atoi(s[1])
			gpus = append(gpus, n)
		}
	}
	slices.Sort(gpus)
	if len(gpus) == 0 {
		return nil, fmt.Errorf("ppml.gpus = %s: no NVIDIA GPU here (no %s): run where the NVIDIA driver is loaded, or remove ppml.gpus", want, filepath.Join(devDir, "nvidia0"))
	}
	if m.GPUs != manifest.AllGPUs {
		if len(gpus) < m.GPUs {
			return nil, fmt.Errorf("ppml.gpus = %d: this machine has %d NVIDIA GPUs", m.GPUs, len(gpus))
		}
		gpus = gpus[:m.GPUs]
	}
	p := &gpuPlan{}
	for _, n := range gpus {
		p.devices = append(p.devices, "nvidia"+strconv.Itoa(n))
	}
	for _, d := range nvidiaDevices {
		if _, err := os.Stat(filepath.Join(devDir, d)); err == nil {
			p.devices = append(p.devices, d)
		}
	}
	if caps, err := os.ReadDir(filepath.Join(devDir, nvidiaCaps)); err == nil {
		for _, c := range caps {
			p.devices = append(p.devices, nvidiaCaps+"/"+c.Name())
		}
	}
	if !slices.Contains(p.devices, "nvidiactl") {
		return nil, fmt.Errorf("ppml.gpus = %s: %s is missing: is the NVIDIA driver loaded?", want, filepath.Join(devDir, "nvidiactl"))
	}
	libs := driverLibraries(ldconfig)
	if !slices.ContainsFunc(libs, func(l string) bool { return strings.HasPrefix(filepath.Base(l), "libcuda.so") }) {
		return nil, fmt.Errorf("ppml.gpus = %s: ldconfig lists no libcuda.so: install the NVIDIA driver's libraries", want)
	}
	folders := resolver{}
	for _, l := range libs {
		f := trustedFile{path: l}
		if f.host, err = folders.resolve(l); err != nil {
			return nil, fmt.Errorf("ppml.gpus: driver library %s: %w", l, err)
		}
		if f.sum, err = hashFile(f.host); err != nil {
			return nil, fmt.Errorf("ppml.gpus: driver library %s: %w", l, err)
		}
		p.files = append(p.files, f)
		p.mounts = append(p.mounts, manifest.Mount{Type: manifest.Chroot, Path: l, URI: "file:" + l})
	}
	return p, nil
}

func hashFile(name string) ([sha256.Size]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return [sha256.Size]byte{}, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return [sha256.Size]byte{}, err
	}
	return [sha256.Size]byte(h.Sum(nil)), nil
}

// driverLibraries returns the NVIDIA driver's user-space libraries (libcuda, libnvidia-*,
// libnvcuvid) of the host's architecture that ldconfig -p lists, absolute and clean, each once.
// The host writes ldconfig's cache: an entry is taken only where the path it leads to is itself
// named as a driver library, so that it cannot put another file of the host over the view.
func driverLibraries(ldconfig []byte) []string {
	var libs []string
	sc := bufio.NewScanner(bytes.NewReader(ldconfig))
	for sc.Scan() {
		name, rest, ok := strings.Cut(strings.TrimSpace(sc.Text()), " (")
		if !ok || !isDriverLibrary(name) {
			continue
		}
		flags, target, ok := strings.Cut(rest, ") => ")
		if !ok || !strings.Contains(flags, "x86-64") || !filepath.IsAbs(target) || !isDriverLibrary(filepath.Base(target)) {
			continue
		}
		if t := filepath.Clean(target); !slices.Contains(libs, t) {
			libs = append(libs, t)
		}
	}
	return libs
}

// isDriverLibrary reports whether a file name is that of an NVIDIA driver's user-space library.
func isDriverLibrary(name string) bool {
	return strings.HasPrefix(name, "libcuda.so") || strings.HasPrefix(name, "libnvidia-") || strings.HasPrefix(name, "libnvcuvid.so")
}

// ldconfigCache returns what ldconfig -p prints: the libraries of the host's cache.
func ldconfigCache() ([]byte, error) {
	for _, name := range []string{"/sbin/ldconfig", "/usr/sbin/ldconfig"} {
		if _, err := os.Stat(name); err == nil {
			out, err := exec.Command(name, "-p").Output()
			if err != nil {
				return nil, fmt.Errorf("ppml.gpus: %s -p: %w", name, err)
			}
			return out, nil
		}
	}
	return nil, errors.New("ppml.gpus: no ldconfig to find the NVIDIA driver's libraries")
}
