package encfs

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ppml/ppml/internal/hostdir"
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

// tempFiles returns the temporary files in the host folder dir.
func tempFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if isTemp(e.Name()) {
			names = append(names, e.Name())
		}
	}
	return names
}

// TestHostSwapsOpenFile: a host that changes a file's bytes between the workload's open and its
// first write must not get them adopted: the write is EIO and logged, the host file keeps what
// the host put there, and reads never return the swapped-in plaintext.
func TestHostSwapsOpenFile(t *testing.T) {
	aPlain, bPlain, oldPlain := content(1, 50000), content(2, 50000), content(3, 50000)
	for _, tc := range []struct {
		name string
		swap func(t *testing.T, host, other string) // other holds b.txt and an older a.txt
	}{
		{"b over a in place", func(t *testing.T, host, other string) {
			b, err := os.ReadFile(filepath.Join(host, "b.txt"))
			if err != nil {
				t.Fatal(err)
			}
			// As cp does: the same inode, truncated and rewritten.
			if err := os.WriteFile(filepath.Join(host, "a.txt"), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{"b renamed over a", func(t *testing.T, host, other string) {
			if err := os.Rename(filepath.Join(other, "b.txt"), filepath.Join(host, "a.txt")); err != nil {
				t.Fatal(err)
			}
		}},
		{"older a in place", func(t *testing.T, host, other string) {
			b, err := os.ReadFile(filepath.Join(other, "a.txt"))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(host, "a.txt"), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host, other := t.TempDir(), t.TempDir()
			aHost := encryptFile(t, host, "a.txt", aPlain)
			encryptFile(t, host, "b.txt", bPlain)
			encryptFile(t, other, "b.txt", bPlain)
			encryptFile(t, other, "a.txt", oldPlain)
			mnt, logs := mount(t, host, testKey, Options{})

			w, err := os.OpenFile(filepath.Join(mnt, "a.txt"), os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			tc.swap(t, host, other)
			swapped, err := os.ReadFile(aHost)
			if err != nil {
				t.Fatal(err)
			}

			got := make([]byte, len(aPlain))
			if _, err := w.ReadAt(got, 0); err == nil && !bytes.Equal(got, aPlain) {
				t.Error("a read after the swap returns other plaintext than a.txt's")
			} else if err != nil && !errors.Is(err, syscall.EIO) {
				t.Errorf("a read after the swap: %v, want EIO or a.txt's plaintext", err)
			}
			if _, err := w.WriteAt([]byte("changed"), 10); !errors.Is(err, syscall.EIO) {
				t.Errorf("the first write after the swap: %v, want EIO", err)
			}
			if err := w.Close(); err != nil {
				t.Errorf("close: %v", err)
			}

			if b, err := os.ReadFile(aHost); err != nil || !bytes.Equal(b, swapped) {
				t.Errorf("encfs changed the host file after the swap (%v)", err)
			}
			plain, err := decryptHost(aHost, "a.txt")
			switch {
			case err == nil && bytes.Equal(plain[:10], bPlain[:10]):
				t.Error("b.txt's plaintext decrypts as a.txt's")
			case err == nil && !bytes.Equal(plain, oldPlain):
				t.Error("the host a.txt decrypts to plaintext the host never put there")
			}
			if names := tempFiles(t, host); len(names) != 0 {
				t.Errorf("temporary files left: %q", names)
			}
			if !strings.Contains(logs.String(), aHost) {
				t.Errorf("no log line names %s:\n%s", aHost, logs)
			}
		})
	}
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
	if !strings.Contains(logs.String(), hostdir.ErrLink.Error()) {
		t.Errorf("no log line tells of a planted link:\n%s", logs)
	}
}

// TestOwnChangesBeforeWrite: what encfs itself does to the host file of a file open but not yet
// written (attributes, names, its folder's name) is not taken for a host's change: the first
// write works and commits.
func TestOwnChangesBeforeWrite(t *testing.T) {
	host := t.TempDir()
	mnt, logs := mount(t, host, testKey, Options{BoundPrefix: "out"})
	if err := os.Mkdir(filepath.Join(mnt, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for i, rel := range []string{"chmod", "utimes", "renamed", "d/moved", "unlinked"} {
		files[rel] = content(uint64(i+20), 30000)
		if err := os.WriteFile(filepath.Join(mnt, rel), files[rel], 0o644); err != nil {
			t.Fatal(err)
		}
	}
	open := map[string]*os.File{}
	for rel := range files {
		f, err := os.OpenFile(filepath.Join(mnt, rel), os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		open[rel] = f
	}
	if err := os.Chmod(filepath.Join(mnt, "chmod"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(filepath.Join(mnt, "utimes"), time.Unix(1e9, 0), time.Unix(1e9, 0)); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(mnt, "renamed"), filepath.Join(mnt, "renamed2")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(mnt, "d"), filepath.Join(mnt, "e")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(mnt, "unlinked")); err != nil {
		t.Fatal(err)
	}
	for rel, f := range open {
		if _, err := f.WriteAt([]byte(canary), 1000); err != nil {
			t.Errorf("%s: write: %v", rel, err)
		}
		copy(files[rel][1000:], canary)
		if err := f.Close(); err != nil {
			t.Errorf("%s: close: %v", rel, err)
		}
	}
	for rel, now := range map[string]string{"chmod": "chmod", "utimes": "utimes", "renamed": "renamed2", "d/moved": "e/moved"} {
		got, err := decryptHost(filepath.Join(host, now), "out/"+now)
		if err != nil || !bytes.Equal(got, files[rel]) {
			t.Errorf("%s: the host file does not hold the write (%v)", now, err)
		}
	}
	if logs.String() != "" {
		t.Errorf("the mount logged:\n%s", logs)
	}
}

// TestSetattrLimits: encfs acts on the host as root, so the workload may not use it to give a
// host file away, make it set-user-ID, set-group-ID or sticky, or change the mount's own host
// folder; it may set permission bits and times.
func TestSetattrLimits(t *testing.T) {
	host := t.TempDir()
	encryptFile(t, host, "f", content(3, 100))
	if err := os.Mkdir(filepath.Join(host, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	mnt, _ := mount(t, host, testKey, Options{})
	modeOf := func(name string) os.FileMode {
		info, err := os.Stat(filepath.Join(host, name))
		if err != nil {
			t.Fatal(err)
		}
		return info.Mode()
	}
	rootMode, fileMode := modeOf("."), modeOf("f")
	for _, tc := range []struct {
		what string
		err  error
	}{
		{"chmod 4755 f", syscall.Chmod(filepath.Join(mnt, "f"), 0o4755)},
		{"chmod 2755 d", syscall.Chmod(filepath.Join(mnt, "d"), 0o2755)},
		{"chmod 1777 d", syscall.Chmod(filepath.Join(mnt, "d"), 0o1777)},
		{"chown 65534 f", os.Chown(filepath.Join(mnt, "f"), 65534, -1)},
		{"chgrp 65534 d", os.Chown(filepath.Join(mnt, "d"), -1, 65534)},
		{"chmod 777 of the mount", os.Chmod(mnt, 0o777)},
	} {
		if !errors.Is(tc.err, syscall.EPERM) {
			t.Errorf("%s: %v, want EPERM", tc.what, tc.err)
		}

	}
	if modeOf(".") != rootMode || modeOf("f") != fileMode || modeOf("d") != os.ModeDir|0o755 {
		t.Errorf("host modes changed: folder %v, f %v, d %v", modeOf("."), modeOf("f"), modeOf("d"))
	}
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(host, "f"), &st); err != nil || st.Uid != uint32(os.Getuid()) {
		t.Errorf("host f owned by %d (%v)", st.Uid, err)
	}
	if err := os.Chmod(filepath.Join(mnt, "f"), 0o640); err != nil || modeOf("f") != 0o640 {
		t.Errorf("chmod 640: %v, host mode %v", err, modeOf("f"))
	}
}

// TestNames: a mount with Names serves those names alone, present or not: the rest of the host
// folder is hidden, and nothing else may be made there.
func TestNames(t *testing.T) {
	host := t.TempDir()
	for _, name := range []string{"a", "b"} {
		encryptFile(t, host, name, content(4, 100))
	}
	mnt, _ := mount(t, host, testKey, Options{Names: []string{"a", "new"}})
	entries, err := os.ReadDir(mnt)
	if err != nil || len(entries) != 1 || entries[0].Name() != "a" {
		t.Errorf("listing: %v, %v; want a alone", entries, err)
	}
	if _, err := os.ReadFile(filepath.Join(mnt, "a")); err != nil {
		t.Errorf("read a: %v", err)
	}
	if _, err := os.Stat(filepath.Join(mnt, "b")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stat b: %v, want it hidden", err)
	}
	if _, err := os.Stat(filepath.Join(mnt, "new")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stat new: %v, want it absent", err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "new"), []byte("made"), 0o644); err != nil {
		t.Errorf("create new: %v", err)
	}
	for what, err := range map[string]error{
		"create other": os.WriteFile(filepath.Join(mnt, "other"), nil, 0o644),
		"mkdir dir":    os.Mkdir(filepath.Join(mnt, "dir"), 0o755),
		"rename a":     os.Rename(filepath.Join(mnt, "a"), filepath.Join(mnt, "other")),
	} {
		if !errors.Is(err, syscall.EACCES) {
			t.Errorf("%s: %v, want EACCES", what, err)
		}
	}
	for _, name := range []string{"other", "dir"} {
		if _, err := os.Lstat(filepath.Join(host, name)); err == nil {
			t.Errorf("%s was made on the host", name)
		}
	}
}
