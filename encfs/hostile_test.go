package encfs

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ppml/ppml/pf"
)

// decryptHost decrypts the host file at p, checking that it is bound to bound.
func decryptHost(p, bound string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	_, err = pf.Decrypt(&out, f, info.Size(), testKey, &pf.Options{CheckPath: true, Path: bound})
	return out.Bytes(), err
}

// TestHostPlantsSymlinks: symbolic links that the host plants in its folder, for a sub-folder
// the workload is in or for a file it has looked up, are never followed: what the workload does
// there fails, and nothing outside the host folder is read, created, changed or removed.
func TestHostPlantsSymlinks(t *testing.T) {
	host, outside := t.TempDir(), t.TempDir()
	secret := content(9, 5000)
	for _, dir := range []string{host, outside} {
		if err := os.Mkdir(filepath.Join(dir, "d"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Outside the host folder, protected files that would pass for d/existing, f and g.
	encryptFile(t, host, "d/existing", content(1, 5000))
	encryptFile(t, outside, "d/existing", secret)
	for _, name := range []string{"f", "g"} {
		encryptFile(t, host, name, content(2, 5000))
		encryptFile(t, outside, name, secret)
	}
	outsideBefore := list(t, outside)
	mnt, logs := mount(t, host, testKey, Options{})

	// The workload is in d, has f open and has just looked g up.
	d, err := os.Open(filepath.Join(mnt, "d"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	f, err := os.Open(filepath.Join(mnt, "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := os.Stat(filepath.Join(mnt, "g")); err != nil {
		t.Fatal(err)
	}

	// The host swaps d, f and g for links to outside its folder.
	if err := os.RemoveAll(filepath.Join(host, "d")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"d", "f", "g"} {
		os.Remove(filepath.Join(host, name))
		if err := os.Symlink(filepath.Join(outside, name), filepath.Join(host, name)); err != nil {
			t.Fatal(err)
		}
	}

	dfd := int(d.Fd())
	if fd, err := unix.Openat(dfd, "x", unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, 0o644); err == nil {
		unix.Close(fd)
		t.Error("creating d/x through a planted link succeeded")
	}
	if err := unix.Mkdirat(dfd, "sub", 0o755); err == nil {
		t.Error("making d/sub through a planted link succeeded")
	}
	if fd, err := unix.Openat(dfd, "existing", unix.O_RDONLY|unix.O_CLOEXEC, 0); err == nil {
		got := make([]byte, len(secret))
		n, _ := unix.Read(fd, got)
		unix.Close(fd)
		if bytes.Equal(got[:n], secret) {
			t.Error("d/existing reads the file outside the host folder")
		} else {
			t.Error("opening d/existing through a planted link succeeded")
		}
	}
	if err := unix.Renameat(dfd, "existing", dfd, "renamed"); err == nil {
		t.Error("renaming d/existing through a planted link succeeded")
	}
	if err := unix.Unlinkat(dfd, "existing", 0); err == nil {
		t.Error("unlinking d/existing through a planted link succeeded")
	}
	if names, err := d.Readdirnames(-1); err == nil && len(names) > 0 {
		t.Errorf("d lists %q, from outside the host folder", names)
	}
	if err := f.Chmod(0o600); err == nil {
		t.Error("chmod of f, now a planted link, succeeded")
	}
	if got, err := os.ReadFile(filepath.Join(mnt, "g")); err == nil && bytes.Equal(got, secret) {
		t.Error("g reads the file outside the host folder")
	}

	if got := list(t, outside); !slices.Equal(got, outsideBefore) {
		t.Errorf("the folder outside holds %q, was %q", got, outsideBefore)
	}
	for _, name := range []string{"d/existing", "f", "g"} {
		info, err := os.Stat(filepath.Join(outside, name))
		if err != nil {
			t.Errorf("%s outside: %v", name, err)
		} else if info.Mode().Perm() != 0o644 {
			t.Errorf("%s outside: mode %v, want 0644", name, info.Mode())
		}
		if got, err := decryptHost(filepath.Join(outside, name), name); err != nil || !bytes.Equal(got, secret) {
			t.Errorf("%s outside changed (%v)", name, err)
		}
	}
	if !strings.Contains(logs.String(), errLink.Error()) {
		t.Errorf("no log line tells of a planted link:\n%s", logs)
	}
}
