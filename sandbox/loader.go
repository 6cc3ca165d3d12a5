package sandbox

import (
	"bufio"
	"bytes"
	"debug/elf"
	"errors"
	"io"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// runtimeDir is where Gramine's manifests mount Gramine's runtime folder, whose dynamic loader
// Gramine runs every program with, whatever the program's PT_INTERP names.
const runtimeDir = "/lib"

// provideLoader makes the dynamic loader that the entrypoint asks for exist in the view where
// the manifest mounts none there, as Gramine provides its runtime's: the loader that the
// entrypoint's PT_INTERP names (/lib64/ld-linux-x86-64.so.2 on x86-64), or, for a "#!" script,
// its interpreter's. If that path is missing from the view and runtimeDir holds a file of the
// same name, the path becomes a symbolic link to it, made in the view (see mountPoint), never on
// the host. Every program that the workload executes and that names the same loader, as every
// program of an installation does, then runs with it too. Nothing changes where the view has
// the loader (a manifest that mounts /lib64), nor where it has neither: the exec then fails,
// and the error says what is missing.
func (v *view) provideLoader(entrypoint string) error {
	interp := v.interpreter(entrypoint)
	if interp == "" || v.exists(interp) {
		return nil
	}
	found := path.Join(runtimeDir, path.Base(interp))
	if !v.exists(found) {
		return nil
	}
	return v.symlink(found, interp)
}

// interpreter returns the dynamic loader that the program p of the view asks for, or "" for
// none or a program that cannot be read (its exec then says why).
func (v *view) interpreter(p string) string {
	for range 2 { // a script, then its interpreter
		f, err := v.open(p)
		if err != nil {
			return ""
		}
		interp, script := interpreterOf(f)
		f.Close()
		if !script {
			return interp
		}
		p = interp
	}
	return ""
}

// interpreterOf returns the PT_INTERP of an ELF executable, or the interpreter of a "#!"
// script with script set; "" for anything else or a damaged file.
func interpreterOf(r io.ReaderAt) (interp string, script bool) {
	var head [2]byte
	if _, err := r.ReadAt(head[:], 0); err != nil {
		return "", false
	}
	if string(head[:]) == "#!" {
		line, err := bufio.NewReader(io.NewSectionReader(r, 2, 254)).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", false
		}
		fields := strings.Fields(line)
		if len(fields) == 0 || !path.IsAbs(fields[0]) || strings.ContainsRune(fields[0], 0) {
			return "", false
		}
		return fields[0], true
	}
	f, err := elf.NewFile(r)
	if err != nil {
		return "", false
	}
	for _, prog := range f.Progs {
		if prog.Type != elf.PT_INTERP || prog.Filesz > unix.PathMax {
			continue
		}
		b := make([]byte, prog.Filesz)
		if _, err := prog.ReadAt(b, 0); err != nil {
			return "", false
		}
		b, _, _ = bytes.Cut(b, []byte{0})
		if s := string(b); path.IsAbs(s) {
			return path.Clean(s), false
		}
	}
	return "", false
}

// open opens the file p of the view, resolving it in the view as the workload would.
func (v *view) open(p string) (*os.File, error) {
	fd, err := unix.Openat2(v.root, strings.TrimPrefix(p, "/"), &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT})
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), p), nil
}

// exists reports whether p is in the view, its symbolic links followed in the view.
func (v *view) exists(p string) bool {
	fd, err := unix.Openat2(v.root, strings.TrimPrefix(p, "/"), &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT})
	if err == nil {
		unix.Close(fd)
	}
	return err == nil
}
