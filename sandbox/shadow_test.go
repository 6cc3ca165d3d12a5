package sandbox

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ppml/ppml/manifest"
)

// inMountNamespace runs f on a thread of its own in a private mount namespace, where /tmp is
// the sandbox's scratch tmpfs and rootDir the workload's root, a tmpfs; the thread ends with f.
func inMountNamespace(t *testing.T, f func() error) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for a mount namespace")
	}
	done := make(chan error)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread goes with its namespace
		done <- func() error {
			if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
				return fmt.Errorf("unshare: %w", err)
			}
			if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
				return fmt.Errorf("make the mounts private: %w", err)
			}
			if err := mountTmpfs(scratchDir, "mode=0700"); err != nil {
				return err
			}
			if err := os.Mkdir(rootDir, 0o755); err != nil {
				return err
			}
			if err := mountTmpfs(rootDir, "mode=0755"); err != nil {
				return err
			}
			return f()
		}()
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestShadowFolderSwapped checks that a host that swaps a folder on the path of a folder that
// shadow is shadowing for a symbolic link, after shadow opened it, leads neither the tmpfs nor
// the binds where the link points: here over /b of the view, which stands for a checked mount.
func TestShadowFolderSwapped(t *testing.T) {
	host := t.TempDir()
	if err := os.MkdirAll(filepath.Join(host, "a", "b", "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(host, "a", "b", "f.txt"), []byte("host"), 0o644); err != nil {
		t.Fatal(err)
	}
	hostFD, err := unix.Open(host, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(hostFD)
	testHookShadow = func(string) {
		if err := unix.Renameat(hostFD, "a", hostFD, "moved"); err != nil {
			t.Error(err)
		}
		if err := unix.Symlinkat(rootDir, hostFD, "a"); err != nil {
			t.Error(err)
		}
	}
	defer func() { testHookShadow = nil }()
	// The host folder's mount is the test's namespace's: bound into the other from a copy.
	tree, err := unix.OpenTree(hostFD, "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_EMPTY_PATH)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(tree)
	inMountNamespace(t, func() error {
		checked := filepath.Join(rootDir, "b")
		if err := os.Mkdir(checked, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(checked, "model"), []byte("checked"), 0o644); err != nil {
			return err
		}
		if err := os.Mkdir(filepath.Join(rootDir, "p"), 0o755); err != nil {
			return err
		}
		if err := bindAt(tree, "/p", 0, false); err != nil {
			return err
		}
		in := stageMount{Type: manifest.Chroot, Path: "/p", Source: host}
		v := &view{root: -1, mounted: []stageMount{in}}
		defer func() {
			for _, tmp := range v.shadows {
				unix.Close(tmp)
			}
		}()
		if err := v.shadow("/p/a/b", in, ""); err != nil {
			t.Logf("shadow: %v", err)
		}
		var root, b unix.Stat_t
		if err := unix.Stat(rootDir, &root); err != nil {
			return err
		}
		if err := unix.Stat(checked, &b); err != nil {
			return err
		}
		if b.Dev != root.Dev {
			t.Errorf("a tmpfs was mounted over %s, where the host's link led", checked)
		}
		if data, err := os.ReadFile(filepath.Join(checked, "model")); err != nil || string(data) != "checked" {
			t.Errorf("the view's /b/model reads %q, %v", data, err)
		}
		// What was opened is shadowed: the folder, now at /p/moved/b, with its names.
		if data, err := os.ReadFile(filepath.Join(rootDir, "p/moved/b/f.txt")); err != nil || string(data) != "host" {
			t.Errorf("the shadowed folder's f.txt reads %q, %v", data, err)
		}
		if err := unix.Mkdirat(unix.AT_FDCWD, filepath.Join(rootDir, "p/moved/b/new"), 0o755); err != nil {
			t.Errorf("no mount point can be made in the shadowed folder: %v", err)
		}
		if _, err := os.Stat(filepath.Join(host, "moved/b/new")); err == nil {
			t.Errorf("the mount point was made on the host")
		}
		return nil
	})
}
