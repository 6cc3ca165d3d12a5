package store

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNewMasterKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "master.key")
	if err := NewMasterKey(path); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 || fi.Size() != MasterKeySize {
		t.Errorf("master key file: mode %v, %d bytes", fi.Mode(), fi.Size())
	}
	before, _ := os.ReadFile(path)
	if err := NewMasterKey(path); !errors.Is(err, fs.ErrExist) {
		t.Errorf("second NewMasterKey: %v", err)
	}
	key, err := ReadMasterKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(key, before) {
		t.Error("the master key file changed, or reads back wrong")
	}
	s, err := Open("sqlite:"+filepath.Join(t.TempDir(), "ppml.db"), key)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}

func TestReadMasterKeyRefuses(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte, mode os.FileMode) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, b, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil { // whatever the umask
			t.Fatal(err)
		}
		return path
	}
	good := bytes.Repeat([]byte{7}, MasterKeySize)
	for _, c := range []struct {
		path, want string
	}{
		{write("short", good[:31], 0o600), "31 bytes"},
		{write("long", append(good, '\n'), 0o600), "33 bytes"},
		{write("hex", []byte(strings.Repeat("07", 32)+"\n"), 0o600), "not hex"},
		{write("empty", nil, 0o600), "0 bytes"},
		{write("zero", make([]byte, MasterKeySize), 0o600), "all zero"},
		{write("world", good, 0o644), "chmod 600"},
		{write("group", good, 0o640), "group or others"},
		{write("others-write", good, 0o602), "group or others"},
		{dir, "not a regular file"},
		{filepath.Join(dir, "missing"), "no such file"},
	} {
		key, err := ReadMasterKey(c.path)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ReadMasterKey(%s) = %x, %v; want an error with %q", filepath.Base(c.path), key, err, c.want)
		}
	}
	if _, err := ReadMasterKey(write("ok", good, 0o400)); err != nil {
		t.Errorf("a read-only key file: %v", err)
	}
}
