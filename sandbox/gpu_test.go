package sandbox

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ppml/ppml/manifest"
)

// fakeDev makes a /dev with the NVIDIA nodes named, as character devices where mknod may make
// them (root), else as plain files standing in for them.
func fakeDev(t *testing.T, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	for i, n := range names {
		p := filepath.Join(dir, n)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(195, uint32(i)))); err != nil {
			if err := os.WriteFile(p, nil, 0o666); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir
}

func gpuManifest(t *testing.T, gpus string) *manifest.Manifest {
	t.Helper()
	m, err := manifest.Parse([]byte("libos.entrypoint = \"/bin/true\"\nppml.gpus = " + gpus + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestPlanGPUs(t *testing.T) {
	libDir := t.TempDir()
	lib := filepath.Join(libDir, "libcuda.so.550.90.07")
	os.WriteFile(lib, []byte("not really libcuda"), 0o644)
	os.Symlink(lib, filepath.Join(libDir, "libcuda.so.1"))
	ldconfig := []byte("3 libs found in cache `/etc/ld.so.cache'\n" +
		"\tlibcuda.so.1 (libc6,x86-64) => " + filepath.Join(libDir, "libcuda.so.1") + "\n" +
		"\tlibcuda.so.1 (libc6) => /usr/lib/i386-linux-gnu/libcuda.so.1\n" +
		"\tlibc.so.6 (libc6,x86-64) => /lib/x86_64-linux-gnu/libc.so.6\n")
	// The host writes ldconfig's cache: an entry that names a driver library but leads to another
	// file (the workload's entrypoint, say) must not mount that file, trusted, over the view.
	app := filepath.Join(t.TempDir(), "run.py")
	os.WriteFile(app, []byte("print('the host's code')"), 0o644)
	ldconfig = append(ldconfig, "\tlibnvidia-ml.so.1 (libc6,x86-64) => "+app+"\n"...)
	dev := fakeDev(t, "nvidia1", "nvidia0", "nvidiactl", "nvidia-uvm", "nvidia-caps/nvidia-cap1", "null")

	p, err := planGPUs(gpuManifest(t, `"all"`), dev, ldconfig)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm", "nvidia-caps/nvidia-cap1"}; !slices.Equal(p.devices, want) {
		t.Errorf("devices %q, want %q", p.devices, want)
	}
	// The library: served where the host has it, as a trusted file hashed now.
	link := filepath.Join(libDir, "libcuda.so.1")
	if len(p.mounts) != 1 || p.mounts[0].Path != link || len(p.files) != 1 || p.files[0].host != lib {
		t.Fatalf("mounts %+v, files %+v", p.mounts, p.files)
	}
	if sum, _ := hashFile(lib); p.files[0].sum != sum {
		t.Error("the library's hash is not its content's")
	}

	p, err = planGPUs(gpuManifest(t, "1"), dev, ldconfig)
	if err != nil || !slices.Equal(p.devices[:2], []string{"nvidia0", "nvidiactl"}) {
		t.Errorf("one GPU: %q, %v", p.devices, err)
	}
	if p, err := planGPUs(gpuManifest(t, "0"), dev, ldconfig); err != nil || len(p.devices)+len(p.mounts) != 0 {
		t.Errorf("no GPU: %+v, %v", p, err)
	}

	for _, tc := range []struct {
		gpus, dev, ldconfig, err string
	}{
		{"3", dev, string(ldconfig), "ppml.gpus = 3: this machine has 2 NVIDIA GPUs"},
		{`"all"`, fakeDev(t, "null"), string(ldconfig), `ppml.gpus = all: no NVIDIA GPU here (no `},
		{"1", fakeDev(t, "nvidia0"), string(ldconfig), "nvidiactl is missing: is the NVIDIA driver loaded?"},
		{"1", dev, "\tlibc.so.6 (libc6,x86-64) => /lib/x86_64-linux-gnu/libc.so.6\n", "ldconfig lists no libcuda.so"},
	} {
		if _, err := planGPUs(gpuManifest(t, tc.gpus), tc.dev, []byte(tc.ldconfig)); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("ppml.gpus = %s: %v, want %q", tc.gpus, err, tc.err)
		}
	}
}

// Without a GPU here, a manifest asking for GPUs is refused before anything starts.
func TestPlanRefusesGPUsNone(t *testing.T) {
	if _, err := os.Stat("/dev/nvidia0"); err == nil {
		t.Skip("this machine has an NVIDIA GPU")
	}
	_, err := plan(gpuManifest(t, `"all"`), nil, nil)
	if err == nil || !strings.Contains(err.Error(), "ppml.gpus = all: no NVIDIA GPU here") {
		t.Fatalf("plan: %v", err)
	}
}

// The system calls CUDA makes pass the workload's filter: ioctl on the NVIDIA devices (the
// resource manager's _IOWR('F', ...) requests, the UVM driver's plain numbers), and memory
// mappings.
func TestSeccompAllowsCUDA(t *testing.T) {
	p, err := seccompFilter()
	if err != nil {
		t.Fatal(err)
	}
	iowrF := func(nr, size uint64) uint64 { return 3<<30 | size<<16 | 'F'<<8 | nr }
	for _, tc := range []struct {
		name string
		nr   uint32
		args []uint64
	}{
		{"ioctl NV_ESC_CARD_INFO", unix.SYS_IOCTL, []uint64{3, iowrF(0xC8, 0x600)}},
		{"ioctl NV_ESC_RM_ALLOC", unix.SYS_IOCTL, []uint64{3, iowrF(0x2B, 0x30)}},
		{"ioctl NV_ESC_RM_CONTROL", unix.SYS_IOCTL, []uint64{3, iowrF(0x2A, 0x20)}},
		{"ioctl UVM_INITIALIZE", unix.SYS_IOCTL, []uint64{3, 0x30000001}},
		{"mmap", unix.SYS_MMAP, []uint64{0, 1 << 21, unix.PROT_READ | unix.PROT_WRITE, unix.MAP_SHARED, 3, 0}},
		{"mremap", unix.SYS_MREMAP, nil},
		{"munmap", unix.SYS_MUNMAP, nil},
		{"madvise", unix.SYS_MADVISE, nil},
		{"mlock", unix.SYS_MLOCK, nil},
		{"memfd_create", unix.SYS_MEMFD_CREATE, nil},
		{"sched_setaffinity", unix.SYS_SCHED_SETAFFINITY, nil},
		{"eventfd2", unix.SYS_EVENTFD2, nil},
	} {
		if got := run(t, p, unix.AUDIT_ARCH_X86_64, tc.nr, tc.args...); got != retAllow {
			t.Errorf("%s: %#x, want allowed", tc.name, got)
		}
	}
}
