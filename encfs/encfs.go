// Package encfs serves a host folder of Gramine protected files as a FUSE filesystem of plaintext
// files, as the encrypted mounts of Gramine's LibOS do.
//
// Every regular file in the host folder is a protected file (see package pf) bound to the path
// that Gramine binds it to: the mount's URI path joined with the file's path inside the mount
// (Options.BoundPrefix). Reads decrypt and check the nodes they touch; an integrity failure is
// EIO for the caller and a log line naming the host file. A host file that does not open as a
// protected file (wrong key, other path, damaged metadata, plaintext) is EIO on open, as in
// Gramine; it can still be listed and unlinked.
//
// Plaintext lives only in memory: in the kernel's page cache, which keeps it across opens while
// the host file does not change, and in encfs's caches. A large file read from its start is
// decrypted ahead of the reads on every core.
//
// A file that is written is changed in a copy of its ciphertext under a temporary name in the
// same host folder, made only if the host file still holds the bytes that were opened (else the
// write is EIO and logged). When a writer closes the file, on fsync, and when the last handle
// goes, the copy is flushed, synced and renamed over the host file, so that a crash leaves the
// old file or the new one, never a torn one. Temporary names (".encfs-tmp-" and 16 hex digits)
// are hidden from the mount; a crash's left-overs are removed when their folder is listed.
//
// Renaming a file inside the mount moves the host file and rebinds it to its new path, as
// Gramine does. Two mounts must not serve overlapping host folders.
//
// Host paths are resolved beneath the host folder, never through a symbolic link (package
// internal/hostdir): links in the host folder are not served, and one on a path is EIO and
// logged.
package encfs

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/ppml/ppml/internal/hostdir"
	"github.com/ppml/ppml/pf"
)

// Options configure a mount.
type Options struct {
	// BoundPrefix is the path of the mount's URI, without "file:" (for example "enc_files" or
	// "/data/enc"). A file at path P inside the mount is bound to pf.BoundPath(BoundPrefix, P).
	BoundPrefix string
	// Logger receives integrity failures and other problems the workload sees only as an errno;
	// nil means slog.Default(). Keys and plaintext are never logged.
	Logger *slog.Logger
	// ReadOnly mounts the filesystem read-only; host files are then never written.
	ReadOnly bool
	// AllowOther lets users other than the one that mounts it use the mount (FUSE's
	// allow_other), as the sandbox's workload, which runs as another user, must. Mount as root
	// for it: fusermount allows it only where /etc/fuse.conf says user_allow_other. Whoever can
	// reach the mount point can then read the plaintext: mount it where only they can.
	AllowOther bool
	// Names, when not empty, are the only names the mount serves at its root, whether or not
	// the host folder holds them yet: the rest of the folder is hidden (ENOENT), and nothing
	// else may be made there (EACCES). The sandbox serves single-file mounts so, so that a
	// file that is absent looks absent and is created when the workload creates it.
	Names []string
}

// Server is a mounted encfs filesystem.
type Server struct {
	srv        *fuse.Server
	mountpoint string
	fsys       *fsys
	done       chan struct{}
}

// cacheTimeout is how long the kernel may trust the entries and attributes encfs returns. Every
// change through the mount goes through encfs, so it only bounds how late changes made directly
// in the host folder are seen.
const cacheTimeout = time.Second

// maxRequest is the largest read or write request the kernel sends.
const maxRequest = 1 << 20

// Mount serves hostDir at mountpoint, decrypting with key, until Unmount. It returns once the
// mount is ready.
func Mount(mountpoint, hostDir string, key pf.Key, opts Options) (*Server, error) {
	host, err := filepath.Abs(hostDir)
	if err != nil {
		return nil, err
	}
	if info, err := os.Stat(host); err != nil {
		return nil, fmt.Errorf("host folder of the encrypted filesystem: %w", err)
	} else if !info.IsDir() {
		return nil, fmt.Errorf("host folder %s of the encrypted filesystem is not a folder", host)
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	hr, err := hostdir.Open(host)
	if err != nil {
		return nil, fmt.Errorf("host folder of the encrypted filesystem: %w", err)
	}
	s := &fsys{root: hr, prefix: opts.BoundPrefix, key: key, log: log, ro: opts.ReadOnly, temps: map[string]bool{},
		readAheads: make(chan struct{}, maxReadAheads)}
	if len(opts.Names) > 0 {
		s.names = make(map[string]bool, len(opts.Names))
		for _, name := range opts.Names {
			s.names[name] = true
		}
	}
	root := &dirNode{fsys: s}
	timeout := cacheTimeout
	fuseLog := slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	mo := fuse.MountOptions{
		FsName: host,
		Name:   "encfs",
		// root calls mount(2) itself; anyone else needs fusermount.
		DirectMountStrict: os.Geteuid() == 0,
		MaxWrite:          maxRequest,
		MaxReadAhead:      maxRequest,
		// Replies come from memory, never from a file descriptor that could be spliced.
		DisableSplice: true,
		Logger:        fuseLog,
		AllowOther:    opts.AllowOther,
	}
	if opts.ReadOnly {
		mo.Options = append(mo.Options, "ro")
	}
	srv, err := fs.Mount(mountpoint, root, &fs.Options{
		MountOptions: mo,
		EntryTimeout: &timeout,
		AttrTimeout:  &timeout,
		Logger:       fuseLog,
	})
	if err != nil {
		hr.Close()
		return nil, fmt.Errorf("mount the encrypted filesystem of %s on %s: %w", host, mountpoint, err)
	}
	raiseReadAhead(mountpoint, log)
	server := &Server{srv: srv, mountpoint: mountpoint, fsys: s, done: make(chan struct{})}
	go func() {
		srv.Wait()
		s.wipe()
		hr.Close()
		close(server.done)
	}()
	return server, nil
}

// raiseReadAhead lets the kernel read ahead as much as one request carries (instead of 128 KiB),
// which makes sequential reads markedly faster. It needs root; without it reads work as well,
// only slower.
func raiseReadAhead(mountpoint string, log *slog.Logger) {
	var st unix.Stat_t
	err := unix.Stat(mountpoint, &st)
	if err == nil {
		p := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev))
		err = os.WriteFile(p, []byte(strconv.Itoa(maxRequest>>10)), 0)
	}
	if err != nil {
		log.Debug("encfs: cannot raise the kernel's read-ahead", "mountpoint", mountpoint, "err", err)
	}
}

// Unmount unmounts the filesystem. If files are still open it detaches the mount instead, which
// then goes away when the last of them is closed; either way the mount point is free when
// Unmount returns without an error.
func (s *Server) Unmount() error {
	if err := s.srv.Unmount(); err == nil {
		return nil
	}
	err := syscall.Unmount(s.mountpoint, syscall.MNT_DETACH)
	if err != nil && err != syscall.EINVAL { // EINVAL: no longer mounted
		return fmt.Errorf("unmount the encrypted filesystem at %s: %w", s.mountpoint, err)
	}
	return nil
}

// Wait returns when the filesystem is unmounted and no longer served; the key is then wiped.
func (s *Server) Wait() { <-s.done }

// fsys is the state that every node of a mount shares.
//
// The locks of a mount, each taken only before those below it:
//   - fsys.ns, the names: held exclusively by Rename and Unlink, which move nodes or take their
//     names away (setting fileNode.gone), and shared by everything else that turns a node into
//     a host path. Reads do without it, but to log a failure.
//   - fileNode.mu, whether a file is open: its openFile, how many use it, its closed size.
//   - openFile.mu, an open file's content: held shared by reads, exclusively by all else.
//   - fileReadAhead.mu, then readAhead.mu: an open file's read-ahead.
//   - fsys.mu, the key and the temporary names.
type fsys struct {
	root   *hostdir.Root // the host folder
	prefix string        // Options.BoundPrefix
	log    *slog.Logger
	ro     bool
	names  map[string]bool // Options.Names; nil serves every name

	ns sync.RWMutex // the names, see above

	mu    sync.Mutex // guards key and temps
	key   pf.Key
	temps map[string]bool // names of the temporary files in use

	readAheads chan struct{} // a token for each read-ahead that a file holds
}

// tempPrefix starts the names of temporary host files; 16 hex digits follow.
const tempPrefix = ".encfs-tmp-"

// isTemp reports whether name is a temporary host file's name.
func isTemp(name string) bool {
	return len(name) == len(tempPrefix)+16 && strings.HasPrefix(name, tempPrefix)
}

// newTemp reserves a fresh temporary name.
func (s *fsys) newTemp() string {
	var b [8]byte
	rand.Read(b[:])
	name := tempPrefix + hex.EncodeToString(b[:])
	s.mu.Lock()
	s.temps[name] = true
	s.mu.Unlock()
	return name
}

func (s *fsys) dropTemp(name string) {
	s.mu.Lock()
	delete(s.temps, name)
	s.mu.Unlock()
}

func (s *fsys) liveTemp(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.temps[name]
}

func (s *fsys) kdk() pf.Key {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.key
}

func (s *fsys) wipe() {
	s.mu.Lock()
	clear(s.key[:])
	s.mu.Unlock()
}

// boundPath returns the path bound into the protected file at rel.
func (s *fsys) boundPath(rel string) string { return pf.BoundPath(s.prefix, rel) }

// relPath returns the path of n inside the mount, or false if n has been removed.
func relPath(n *fs.Inode) (string, bool) {
	var parts []string
	for !n.IsRoot() {
		name, parent := n.Parent()
		if parent == nil {
			return "", false
		}
		parts = append(parts, name)
		n = parent
	}
	for i, j := 0, len(parts)-1; i < j; i, j = i+1, j-1 {
		parts[i], parts[j] = parts[j], parts[i]
	}
	return strings.Join(parts, "/"), true
}

// errnoOf returns what the caller sees of err: a host error keeps its errno; anything else,
// above all a protected file that fails its checks, is EIO.
func errnoOf(err error) syscall.Errno {
	var en syscall.Errno
	if errors.As(err, &en) {
		return en
	}
	return syscall.EIO
}

// errno logs err, a failure of op on the host file host, and returns errnoOf(err).
func (s *fsys) errno(host, op string, err error) syscall.Errno {
	s.log.Error("encfs: "+op+" failed", "file", host, "err", err)
	return errnoOf(err)
}

// hostErrno returns what the caller sees of err, a failure of op on the host file at rel: a host
// error keeps its errno; anything else, above all a symbolic link on the path (hostdir.ErrLink), is
// logged and EIO.
func (s *fsys) hostErrno(rel, op string, err error) syscall.Errno {
	var en syscall.Errno
	if errors.As(err, &en) {
		return en
	}
	return s.errno(s.root.Name(rel), op, err)
}
