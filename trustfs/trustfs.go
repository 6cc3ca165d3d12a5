// Package trustfs serves the trusted files of a manifest, read-only, as a FUSE filesystem, as
// the chroot mounts of Gramine's LibOS serve them under its strict file-check policy: a file is
// there only if the manifest trusts it, and it is served only as it was when it was checked.
// Every other host file is absent (ENOENT), but for what an Entry lets in unchecked.
//
// # Checking
//
// A trusted file is checked when it is first opened, not before: its host file is read once,
// in chunks of ChunkSize, several at once on every core for a large file, and the SHA-256 of
// the whole compared with the manifest's. A file that does not match is refused (EACCES) with a
// log line naming it, and checked again at its next open; so is a host file that gives no chunk
// within Options.HostTimeout (EIO), so that a host that does not answer fails the open rather
// than hanging it. A file that matches keeps a tag of each of its chunks, made as the check read
// it (a GMAC under a key of the mount's own, see tag), in memory, for as long as it is mounted,
// and from then on every read re-reads the chunks it covers from the host file, tags them and
// compares: a host that changes the file after the check gets EIO for the reader, and a log
// line, never its bytes. The file is thus served as it was checked without being copied. A later
// open of a file whose size changed is refused (EACCES) at once. The chunks last verified are
// kept, CacheChunks of them for the whole filesystem, so that the kernel's requests, which may
// be smaller than a chunk, read and verify each chunk once; mounted by root, the kernel reads
// ahead by a chunk, so that a chunk comes in one request.
//
// Options.CheckAhead lists files to check before they are opened, beside the workload: such a
// check is the check of a first open, made sooner, on a thread of the lowest priority; a list
// only orders the checks.
//
// # The kernel's page cache
//
// A trusted file is opened with FOPEN_KEEP_CACHE: the kernel keeps what it has cached of it
// across opens, and memory maps (the dynamic loader maps libraries) work as on any file. This
// is safe because the kernel caches only what trustfs replied, which is the checked content:
// that never changes, so nothing cached goes stale, and what the kernel drops it reads again
// through trustfs, which checks it again. A page of a memory map that the kernel reads after
// the host changed the file fails: the process gets SIGBUS. Direct I/O (FOPEN_DIRECT_IO), which
// would send every read to trustfs, is not used: it breaks shared memory maps. A file served
// unchecked is opened without FOPEN_KEEP_CACHE, so that each open sees the host's bytes.
//
// The kernel may keep a trusted file's status for cacheTimeout, also the host file's that it is
// given before the check; the first open that passes the check makes the kernel drop that one
// before it returns, so that a size the host showed before the check never bounds the reads of
// the checked content. A filesystem without Unchecked entries also lets the kernel remember
// for cacheTimeout a name that it does not serve.
//
// # Host files
//
// Host paths are resolved beneath the host folder given to Mount, never through a symbolic
// link (openat2 with RESOLVE_BENEATH and RESOLVE_NO_SYMLINKS): Entry.Host names a host file
// by a path without a link, resolved beforehand, and a link that the host plants there later
// fails the open (EIO, logged). The files keep their host owner and permission bits, and the
// kernel checks them for the caller (default_permissions), so that a user reads what it may
// read on the host. The folders that only lead to entries are the filesystem's own: owned by
// root and readable by all, they list only those entries.
//
// # Files to create
//
// A Creatable entry is a host file that the workload may create (an sgx.allowed_files file not
// on the host yet): absent until then, it is made beneath the host folder without following a
// link (O_EXCL), owned by Options.Owner, and then served as the host has it, writable. A
// filesystem with such entries is mounted writable, since the kernel would refuse the creation
// on a read-only one, and refuses every other change itself: no other name may be made
// (EACCES), nothing removed (EROFS), no trusted file written. The folder that holds a
// Creatable entry is Options.Owner's, for the kernel's permission check.
package trustfs

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/ppml/ppml/internal/hostdir"
)

// Kind is what an Entry serves.
type Kind int

const (
	// Trusted is a host file served only while its content is what Entry.SHA256 says.
	Trusted Kind = iota
	// Unchecked is a host file, folder or symbolic link served as the host has it, a folder
	// with everything in it: an sgx.allowed_files entry, or what sgx.file_check_policy
	// "allow_all_but_log" lets in.
	Unchecked
	// Folder is an empty folder of the filesystem's own, and File an empty file: mount points
	// for what is mounted over them.
	Folder
	File
	// Creatable is a host file that need not exist: absent until the workload creates it,
	// which makes the host file, owned by Options.Owner; then served as the host has it,
	// unchecked and writable. An sgx.allowed_files entry that is not on the host yet.
	Creatable
)

// An Entry is one thing that a filesystem serves; the folders that lead to it are served too.
type Entry struct {
	// Path is where it is served: slash-separated, relative to the filesystem's root and clean.
	Path string
	Kind Kind
	// Host is the host file of Trusted and Unchecked entries, relative to the host folder given
	// to Mount, without a symbolic link on its path.
	Host string
	// SHA256 is the hash of a Trusted entry's content.
	SHA256 [sha256.Size]byte
}

// Options configure a mount.
type Options struct {
	// Logger receives the files refused and what the reader saw only as an errno; nil means
	// slog.Default().
	Logger *slog.Logger
	// AllowOther lets users other than the one that mounts it use the mount (FUSE's
	// allow_other), as the sandbox's workload, which runs as another user, must. Mount as root
	// for it.
	AllowOther bool
	// HostTimeout is how long the first check of a trusted file waits for each chunk of its
	// host file: a host that does not answer fails the open (EIO) instead of hanging it. 0 means
	// DefaultHostTimeout.
	HostTimeout time.Duration
	// Owner owns the host files that the workload creates (Creatable entries); nil means root.
	Owner *Owner
	// CheckAhead are host files of Trusted entries (as Entry.Host names them) to check before
	// they are opened, in this order, one at a time, by a thread of low priority, from the
	// mount until Unmount: a hint, such as the files that the workload opened last time (see
	// Stats.Opened), that lets their checks run beside the workload instead of in its way.
	// A file checked ahead is checked exactly as on its first open, and is served as it was
	// checked; an open that comes while it is checked waits for that check; a file not listed
	// is checked on its first open, and a name that no Trusted entry has is ignored. A wrong
	// hint costs only the checks.
	CheckAhead []string
}

// DefaultHostTimeout is the default of Options.HostTimeout.
const DefaultHostTimeout = 30 * time.Second

// ChunkSize is the size of the chunks that a trusted file is checked in: each has its hash.
const ChunkSize = 1 << 20

// CacheChunks is how many verified chunks a filesystem keeps in memory, at most.
const CacheChunks = 32

// Stats say what checking the trusted files took.
type Stats struct {
	Files int           // the trusted files checked: those opened, and those checked ahead
	Bytes int64         // their size
	Time  time.Duration // the time spent checking them, added up
	// Opened are the host files of the trusted files opened (as Entry.Host names them), in
	// the order of their first opens that passed the check: what Options.CheckAhead may list
	// for the next mount of the same entries.
	Opened []string `json:",omitempty"`
}

// Server is a mounted filesystem.
type Server struct {
	srv        *fuse.Server
	mountpoint string
	fsys       *fsys
	done       chan struct{}
	stopAhead  context.CancelFunc // stops the checks ahead of the opens
}

// cacheTimeout is how long the kernel may trust the entries and attributes of the tree's
// folders and files. What is served unchecked it may not cache: each lookup, status and open
// sees the host as it is then, as through a bind mount.
const cacheTimeout = time.Second

// Mount serves entries, files of the host folder host, at mountpoint until Unmount. It returns
// once the mount is ready. Two entries must not have the same Path, nor one lie inside a file.
func Mount(mountpoint, host string, entries []Entry, opts Options) (*Server, error) {
	t, err := newTree(entries)
	if err != nil {
		return nil, err
	}
	host, err = filepath.Abs(host)
	if err != nil {
		return nil, err
	}
	hr, err := hostdir.Open(host)
	if err != nil {
		return nil, fmt.Errorf("host folder of the trusted files: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	tg, err := newTagger()
	if err != nil {
		hr.Close()
		return nil, err
	}
	timeout := opts.HostTimeout
	if timeout <= 0 {
		timeout = DefaultHostTimeout
	}
	s := &fsys{root: hr, log: log, tagger: tg, hostTimeout: timeout, cache: newChunkCache(CacheChunks), files: map[fileKey]*trusted{}, mounted: time.Now(), owner: ownerOf(opts)}
	options := []string{"ro", "default_permissions"}
	if creatable(entries) {
		options = options[1:] // create.go
	}
	ahead := s.aheadOf(entries, opts.CheckAhead)
	root := &dirNode{fsys: s, own: true, tree: t}
	fuseLog := slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	srv, err := gofs.Mount(mountpoint, root, &gofs.Options{
		MountOptions: fuse.MountOptions{
			FsName: host,
			Name:   "trustfs",
			// root calls mount(2) itself; anyone else needs fusermount.
			DirectMountStrict: os.Geteuid() == 0,
			MaxWrite:          ChunkSize, // which sets the largest read request too
			MaxReadAhead:      ChunkSize,
			// Replies come from memory, never from a file descriptor that could be spliced.
			DisableSplice: true,
			Logger:        fuseLog,
			AllowOther:    opts.AllowOther,
			Options:       options,
		},
		// The host's permission bits as they are, 0 included.
		NullPermissions: true,
		// A name that a mount without unchecked entries does not serve is absent for as long as
		// it is mounted: the kernel may remember it, as it remembers the names it serves.
		NegativeTimeout: negativeTimeout(entries),
		Logger:          fuseLog,
	})
	if err != nil {
		hr.Close()
		return nil, fmt.Errorf("mount the trusted files of %s on %s: %w", host, mountpoint, err)
	}
	if err := readAhead(mountpoint); err != nil {
		log.Debug("trustfs: the kernel reads ahead of the trusted files by its default (128 KiB), not by a chunk", "err", err)
	}
	ctx, stop := context.WithCancel(context.Background())
	server := &Server{srv: srv, mountpoint: mountpoint, fsys: s, done: make(chan struct{}), stopAhead: stop}
	aheadDone := make(chan struct{})
	go func() {
		defer close(aheadDone)
		s.checkAhead(ctx, ahead)
	}()
	go func() {
		srv.Wait()
		stop()
		<-aheadDone // which holds the host folder no longer
		hr.Close()
		close(server.done)
	}()
	return server, nil
}

// readAhead lets the kernel read ahead of the mount at mountpoint by a chunk, not by its default
// of 128 KiB, so that a chunk comes to trustfs in one request rather than 8: it sets the
// read_ahead_kb of the mount's backing device, which only root may.
func readAhead(mountpoint string) error {
	var st unix.Stat_t
	if err := unix.Stat(mountpoint, &st); err != nil {
		return err
	}
	return os.WriteFile(bdiReadAhead(st.Dev), []byte(strconv.Itoa(ChunkSize>>10)), 0)
}

// bdiReadAhead is the file of the read-ahead, in KiB, of the backing device dev.
func bdiReadAhead(dev uint64) string {
	return fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(dev), unix.Minor(dev))
}

// negativeTimeout is how long the kernel may remember a name that the filesystem of entries
// does not serve: cacheTimeout, unless an entry is Unchecked, whose host folder may gain the
// name at any time, or Creatable.
func negativeTimeout(entries []Entry) *time.Duration {
	if slices.ContainsFunc(entries, func(e Entry) bool { return e.Kind == Unchecked || e.Kind == Creatable }) {
		return nil
	}
	d := cacheTimeout
	return &d
}

// Unmount unmounts the filesystem. If files are still open it detaches the mount instead, which
// then goes away when the last of them is closed; either way the mount point is free when
// Unmount returns without an error.
func (s *Server) Unmount() error {
	s.stopAhead()
	if err := s.srv.Unmount(); err == nil {
		return nil
	}
	err := syscall.Unmount(s.mountpoint, syscall.MNT_DETACH)
	if err != nil && err != syscall.EINVAL { // EINVAL: no longer mounted
		return fmt.Errorf("unmount the trusted files at %s: %w", s.mountpoint, err)
	}
	return nil
}

// Wait returns when the filesystem is unmounted and no longer served.
func (s *Server) Wait() { <-s.done }

// Stats returns what checking the trusted files has taken so far.
func (s *Server) Stats() Stats {
	s.fsys.statsMu.Lock()
	defer s.fsys.statsMu.Unlock()
	st := s.fsys.stats
	st.Opened = slices.Clone(st.Opened)
	return st
}

// fsys is the state that every node of a mount shares.
//
// The locks of a mount, each taken only before those below it:
//   - dirNode.entriesMu, while a folder of the tree makes the node of one of its entries;
//   - fsys.filesMu, the trusted files by host file and hash;
//   - trusted.checking, while a trusted file is checked, which its other opens wait for;
//   - fsys.statsMu, the statistics;
//   - chunkCache.mu, the chunks verified last.
//
// Reads take no lock but the cache's: what a file's check found (trusted.checked) never changes
// once it is set.
type fsys struct {
	root        *hostdir.Root
	log         *slog.Logger
	tagger      *tagger
	hostTimeout time.Duration // Options.HostTimeout
	cache       *chunkCache
	mounted     time.Time // the times of the filesystem's own folders and files
	owner       Owner     // Options.Owner

	filesMu sync.Mutex // guards files
	// files are the trusted files, one for each host file and hash, however many entries
	// serve it.
	files map[fileKey]*trusted

	statsMu sync.Mutex // guards stats
	stats   Stats
}

// opened adds the first open of the trusted file t that passed the check to the statistics.
func (s *fsys) opened(t *trusted) {
	if t.opened.Swap(true) {
		return
	}
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	s.stats.Opened = append(s.stats.Opened, t.host)
}

// counted adds the check of a file of size bytes, which took d, to the statistics.
func (s *fsys) counted(size int64, d time.Duration) {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	s.stats.Files++
	s.stats.Bytes += size
	s.stats.Time += d
}

// fileKey names a trusted file: its host file and hash.
type fileKey struct {
	host string
	sum  [sha256.Size]byte
}

// trustedFile returns the state of the trusted file of e, shared by the entries that serve the
// same host file with the same hash.
func (s *fsys) trustedFile(e Entry) *trusted {
	s.filesMu.Lock()
	defer s.filesMu.Unlock()
	key := fileKey{e.Host, e.SHA256}
	t := s.files[key]
	if t == nil {
		t = &trusted{host: e.Host, want: e.SHA256, id: uint64(len(s.files))}
		s.files[key] = t
	}
	return t
}

// hostErrno returns what the caller sees of err, a failure of op on the host file rel: a host
// error keeps its errno; anything else, above all a symbolic link on the path (hostdir.ErrLink), is
// logged and EIO.
func (s *fsys) hostErrno(rel, op string, err error) syscall.Errno {
	var en syscall.Errno
	if errors.As(err, &en) {
		return en
	}
	s.log.Error("trustfs: "+op+" failed", "file", s.root.Name(rel), "err", err)
	return syscall.EIO
}

// tree is what a filesystem serves before any host folder is listed: its entries, and the
// folders that lead to them.
type tree struct {
	entry    *Entry // nil for a folder that only leads to entries
	children map[string]*tree
}

// newTree builds the tree of entries.
func newTree(entries []Entry) (*tree, error) {
	root := &tree{}
	for i := range entries {
		e := &entries[i]
		if e.Path == "" || e.Path == "." || path.Clean(e.Path) != e.Path || path.IsAbs(e.Path) || e.Path == ".." || strings.HasPrefix(e.Path, "../") {
			return nil, fmt.Errorf("trusted-file entry %q: not a clean relative path", e.Path)
		}
		t := root
		for part := range strings.SplitSeq(e.Path, "/") {
			if t.isFile() {
				return nil, fmt.Errorf("trusted-file entry %s lies inside the file %s", e.Path, t.entry.Path)
			}
			ch := t.children[part]
			if ch == nil {
				ch = &tree{}
				if t.children == nil {
					t.children = map[string]*tree{}
				}
				t.children[part] = ch
			}
			t = ch
		}
		if t.entry != nil {
			return nil, fmt.Errorf("two trusted-file entries at %s", e.Path)
		}
		t.entry = e
		if t.isFile() && len(t.children) > 0 {
			return nil, fmt.Errorf("trusted-file entries lie inside the file %s", e.Path)
		}
	}
	return root, nil
}

// isFile reports whether t is a file: a Trusted, File or Creatable entry.
func (t *tree) isFile() bool {
	return t.entry != nil && (t.entry.Kind == Trusted || t.entry.Kind == File || t.entry.Kind == Creatable)
}

// node returns the node that serves t, the entry name of the folder d, and its type; nil for
// an Unchecked entry that is not on the host, or not something served.
func (s *fsys) node(d *dirNode, name string, t *tree) (gofs.InodeEmbedder, uint32) {
	host, backed := hostdir.Join(d.host, name), d.backed
	switch e := t.entry; {
	case e == nil:
	case e.Kind == Folder:
		backed = false
	case e.Kind == Trusted:
		return &fileNode{fsys: s, file: s.trustedFile(*e)}, syscall.S_IFREG
	case e.Kind == File:
		return &emptyFile{fsys: s}, syscall.S_IFREG
	case e.Kind == Creatable:
		var st syscall.Stat_t
		if err := s.root.Stat(e.Host, &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFREG {
			return nil, 0 // absent until the workload creates it
		}
		return &hostFile{fsys: s, host: e.Host, writable: true}, syscall.S_IFREG
	case e.Kind == Unchecked:
		host, backed = e.Host, true
		if len(t.children) == 0 {
			var st syscall.Stat_t
			if err := s.root.Stat(host, &st); err != nil {
				s.log.Warn("trustfs: a file served unchecked is not on the host", "file", s.root.Name(host), "err", err)
				return nil, 0
			}
			return unchecked(s, host, st.Mode)
		}
	}
	return &dirNode{fsys: s, own: true, tree: t, host: host, backed: backed}, syscall.S_IFDIR
}

// errnoOf returns the errno of err, EIO for an error without one.
func errnoOf(err error) syscall.Errno {
	var en syscall.Errno
	if errors.As(err, &en) {
		return en
	}
	return syscall.EIO
}
