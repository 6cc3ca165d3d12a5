package sandbox

import (
	"bytes"
	"encoding/binary"
	"encoding/gob"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"github.com/ppml/ppml/encfs"
	"github.com/ppml/ppml/internal/harden"
	"github.com/ppml/ppml/internal/hostdir"
	"github.com/ppml/ppml/manifest"
	"github.com/ppml/ppml/pf"
	"github.com/ppml/ppml/trustfs"
)

// stageName is argv[0] of the sandbox process, by which init recognises it.
const stageName = "ppml-sandbox"

// init turns the process into the sandbox process or the workload's init when argv says so.
func init() {
	if len(os.Args) != 1 {
		return
	}
	switch os.Args[0] {
	case stageName:
		os.Exit(stage())
	case workloadName:
		// Capabilities, securebits, no_new_privs and the system-call filter are the thread's:
		// the one that package initialisation runs on, the main one, sets them and executes the
		// workload.
		runtime.LockOSThread()
		os.Exit(workloadInit())
	}
}

// Where the sandbox process builds the workload's view, in its own mount namespace.
const (
	scratchDir = "/tmp"         // a tmpfs holding the rest
	hostDir    = "/tmp/host"    // a copy of the host's mount tree
	rootDir    = "/tmp/root"    // the workload's root
	volumesDir = "/tmp/encfs"   // the encfs volumes, as /tmp/encfs/INDEX
	trustedDir = "/tmp/trustfs" // the trusted files' filesystem
	allowedDir = "/tmp/allowed" // the allowed files that the workload may create
)

// devices are the device files that the workload's /dev holds, as Gramine's LibOS provides them.
var devices = []string{"null", "zero", "full", "random", "urandom"}

// cpuDescription is what Gramine's LibOS emulates of /proc and /sys to describe the CPU, without
// which PyTorch's CPU detection fails and it picks other kernels and threads than natively. The
// view holds the host's, read-only, under whatever the manifest mounts there.
var cpuDescription = []string{"/proc/cpuinfo", "/sys/devices/system/cpu", "/sys/devices/system/node"}

// unmountTimeout bounds the wait for the filesystems that the sandbox serves to go away once the
// workload has ended: only a process of the workload that escaped its process group can hold
// them longer.
const unmountTimeout = 5 * time.Second

// stage is the sandbox process. It reports to Run on reportFD and returns its own exit status.
func stage() int {
	runtime.LockOSThread() // the workload's parent-death signal follows this thread
	// Run forwards these signals to the workload; the sandbox process outlives it.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	syscall.CloseOnExec(configFD)
	syscall.CloseOnExec(reportFD)
	out := json.NewEncoder(os.NewFile(reportFD, "report"))
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{
		// Name host files by their host paths.
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if s, ok := a.Value.Any().(string); ok && strings.HasPrefix(s, hostDir+"/") {
				a.Value = slog.StringValue(strings.TrimPrefix(s, hostDir))
			}
			return a
		},
	}))
	// The keys and the plaintext encfs serves live here: in RAM only, out of a core dump, and out
	// of reach of a workload running as root without capabilities.
	if err := harden.Process(); err != nil {
		out.Encode(report{Error: err.Error()})
		return 1
	}
	code, checked, err := serve(os.NewFile(configFD, "config"), log, func(pid int) { out.Encode(report{PID: pid}) })
	if err != nil {
		out.Encode(report{Error: err.Error()})
		return 1
	}
	out.Encode(report{Exit: &code, Checked: checked})
	return 0
}

// serve reads its configuration from config, builds the workload's view, runs the workload,
// calling started with its process ID, and returns its exit status and what checking the
// trusted files it opened took.
func serve(config *os.File, log *slog.Logger, started func(pid int)) (int, trustfs.Stats, error) {
	cfg, keys, err := readConfig(config)
	config.Close()
	defer clear(keys)
	if err != nil {
		return 0, trustfs.Stats{}, fmt.Errorf("sandbox configuration: %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return 0, trustfs.Stats{}, fmt.Errorf("make the sandbox's mounts private: %w", err)
	}
	v := &view{log: log, root: -1}
	defer v.teardown()
	if err := v.build(cfg, keys); err != nil {
		return 0, trustfs.Stats{}, err
	}
	clear(keys)
	code, err := runWorkload(cfg, started)
	var checked trustfs.Stats
	if v.trusted != nil {
		checked = v.trusted.Stats()
	}
	return code, checked, err
}

// readConfig reads what sendConfig wrote.
func readConfig(r io.Reader) (*stageConfig, []pf.Key, error) {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, nil, err
	}
	b := make([]byte, binary.BigEndian.Uint32(n[:]))
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, nil, err
	}
	var cfg stageConfig
	if err := gob.NewDecoder(bytes.NewReader(b)).Decode(&cfg); err != nil {
		return nil, nil, err
	}
	keys := make([]pf.Key, len(cfg.KeyNames))
	for i := range keys {
		if _, err := io.ReadFull(r, keys[i][:]); err != nil {
			return nil, keys, err
		}
	}
	return &cfg, keys, nil
}

// view is the workload's view of the filesystem as it is being built.
type view struct {
	log     *slog.Logger
	root    int             // an O_PATH descriptor of the root (its tmpfs, or fs.root's mount), or -1
	rooted  bool            // fs.root is mounted over the root's tmpfs
	mounted []stageMount    // the mounts made in the root so far, devices included
	volumes []*encfs.Server // the encfs volumes
	trusted *trustfs.Server // the trusted files' filesystem, or nil
	allowed *trustfs.Server // the filesystem of the allowed files to create, or nil
	exposed map[int]bool    // the volumes bound at exposedDir in the root, for absent files
	shadows []int           // the tmpfs mounts that shadow made, open
}

// exposedDir is where, in the workload's view, a volume of single-file encrypted mounts is
// bound when one of its files is absent: the file's path is then a symbolic link into it, so
// that the workload creates the file where encfs serves it. The volume serves the names of
// its mounts alone (encfs.Options.Names).
const exposedDir = "/.ppml/encrypted"

// build builds the workload's view at rootDir.
func (v *view) build(cfg *stageConfig, keys []pf.Key) error {
	// Copy the host's tree before the scratch tmpfs hides its /tmp.
	host, err := unix.OpenTree(unix.AT_FDCWD, "/", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	if err != nil {
		return fmt.Errorf("copy the host's mount tree: %w", err)
	}
	defer unix.Close(host)
	if err := mountTmpfs(scratchDir, "mode=0700"); err != nil {
		return err
	}
	for _, dir := range []string{hostDir, rootDir, volumesDir, trustedDir, allowedDir} {
		if err := os.Mkdir(dir, 0o700); err != nil {
			return err
		}
	}
	if err := unix.MoveMount(host, "", unix.AT_FDCWD, hostDir, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("attach the copy of the host's mount tree: %w", err)
	}
	if err := mountTmpfs(rootDir, "mode=0755"); err != nil {
		return err
	}
	if v.root, err = unix.Open(rootDir, unix.O_PATH|unix.O_CLOEXEC, 0); err != nil {
		return err
	}

	if len(cfg.Trusted) > 0 {
		// allow_other for the workload, as for the volumes below.
		v.trusted, err = trustfs.Mount(trustedDir, hostDir, cfg.Trusted, trustfs.Options{Logger: v.log, AllowOther: true, CheckAhead: cfg.CheckAhead})
		if err != nil {
			return err
		}
	}
	for i, vol := range cfg.Volumes {
		mp := filepath.Join(volumesDir, strconv.Itoa(i))
		if err := os.Mkdir(mp, 0o700); err != nil {
			return err
		}
		// The workload runs as another user: it needs allow_other. The volume is reachable only
		// in this mount namespace, under volumesDir, which only root may enter.
		s, err := encfs.Mount(mp, filepath.Join(hostDir, vol.Host), keys[slices.Index(cfg.KeyNames, vol.KeyName)], encfs.Options{BoundPrefix: vol.Prefix, Logger: v.log, AllowOther: true, Names: cfg.fileNames(i)})
		if err != nil {
			return fmt.Errorf("encrypted mount of %s: %w", vol.Host, err)
		}
		v.volumes = append(v.volumes, s)
	}
	mounts := cfg.Mounts
	if len(mounts) > 0 && mounts[0].Path == "/" {
		if err := v.mountRoot(mounts[0]); err != nil {
			return err
		}
		mounts = mounts[1:]
	}
	for _, sm := range cfg.provided() {
		// Devices must keep working: nodev is for every other mount.
		attrs := uint64(unix.MOUNT_ATTR_NOSUID)
		if sm.ReadOnly {
			attrs |= unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOEXEC
		}
		if err := v.mount(sm, attrs); err != nil {
			return err
		}
	}
	for _, sm := range mounts {
		if err := v.mount(sm, unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV); err != nil {
			return fmt.Errorf("mount %s: %w", sm.Path, err)
		}
	}
	if err := v.linkAllowed(cfg); err != nil {
		return fmt.Errorf("sgx.allowed_files: %w", err)
	}
	if err := v.provideLoader(cfg.Path); err != nil {
		return fmt.Errorf("provide the dynamic loader: %w", err)
	}
	for _, tmp := range v.shadows {
		if err := unix.MountSetattr(tmp, "", unix.AT_EMPTY_PATH, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}); err != nil {
			return fmt.Errorf("make a folder of mount points read-only: %w", err)
		}
	}
	if !v.rooted {
		return v.rootReadOnly()
	}
	return nil
}

// mountRoot mounts sm, fs.root, at the root of the view. The view's own root, which it covers,
// is then read-only, and v.root the root that it mounted.
func (v *view) mountRoot(sm stageMount) error {
	if err := v.mount(sm, unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV); err != nil {
		return fmt.Errorf("mount the root (fs.root): %w", err)
	}
	if err := v.rootReadOnly(); err != nil {
		return err
	}
	unix.Close(v.root)
	var err error
	v.root, err = unix.Open(rootDir, unix.O_PATH|unix.O_CLOEXEC, 0)
	v.rooted = true
	return err
}

// rootReadOnly makes v.root, the view's own root, read-only.
func (v *view) rootReadOnly() error {
	if err := unix.MountSetattr(v.root, "", unix.AT_EMPTY_PATH, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}); err != nil {
		return fmt.Errorf("make the workload's root read-only: %w", err)
	}
	return nil
}

// mount makes the mount sm in the workload's root, bind mounts getting the MOUNT_ATTR_* attrs.
func (v *view) mount(sm stageMount, attrs uint64) error {
	if sm.Type == manifest.Tmpfs {
		if err := v.mountPoint(sm.Path, true); err != nil {
			return err
		}
		if err := mountTmpfsAt(sm.Path, "mode=1777"); err != nil {
			return err
		}
		v.mounted = append(v.mounted, sm)
		return nil
	}
	source := filepath.Join(hostDir, sm.Source)
	switch {
	case sm.Type == manifest.Encrypted:
		source = filepath.Join(volumesDir, strconv.Itoa(sm.Volume), sm.Source)
	case sm.Checked != "":
		source = filepath.Join(trustedDir, sm.Checked)
	}
	info, err := os.Stat(source)
	if sm.Type == manifest.Encrypted && sm.Source != "" && errors.Is(err, fs.ErrNotExist) {
		return v.linkAbsent(sm)
	}
	if err != nil {
		return err
	}
	if err := v.mountPoint(sm.Path, info.IsDir()); err != nil {
		return err
	}
	if sm.ReadOnly {
		attrs |= unix.MOUNT_ATTR_RDONLY
	}
	tree, err := unix.OpenTree(unix.AT_FDCWD, source, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	if err != nil {
		return fmt.Errorf("bind mount: %w", err)
	}
	defer unix.Close(tree)
	if err := bindAt(tree, sm.Path, attrs, true); err != nil {
		return err
	}
	v.mounted = append(v.mounted, sm)
	return nil
}

// allowedView is where, in the workload's view, the allowed files that are not on the host yet
// are served (cfg.Absent), each as allowedView/INDEX/NAME, by a filesystem of trusted files
// that serves them alone (trustfs.Creatable): each one's path is a symbolic link there, so that
// the file looks absent and is made, on the host, when the workload makes it, as in Gramine.
const allowedView = "/.ppml/allowed"

// linkAllowed serves the allowed files of cfg.Absent at allowedView, their paths being
// symbolic links there. The files that the workload makes are its user's.
func (v *view) linkAllowed(cfg *stageConfig) error {
	if len(cfg.Absent) == 0 {
		return nil
	}
	entries := make([]trustfs.Entry, len(cfg.Absent))
	for i, a := range cfg.Absent {
		entries[i] = trustfs.Entry{Path: path.Join(strconv.Itoa(i), path.Base(a.Path)), Kind: trustfs.Creatable, Host: a.Host[1:]}
	}
	var err error
	v.allowed, err = trustfs.Mount(allowedDir, hostDir, entries, trustfs.Options{Logger: v.log, AllowOther: true, Owner: &trustfs.Owner{UID: cfg.UID, GID: cfg.GID}})
	if err != nil {
		return err
	}
	if err := v.mountPoint(allowedView, true); err != nil {
		return err
	}
	tree, err := unix.OpenTree(unix.AT_FDCWD, allowedDir, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return fmt.Errorf("bind mount: %w", err)
	}
	defer unix.Close(tree)
	if err := bindAt(tree, allowedView, unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOEXEC, false); err != nil {
		return err
	}
	for i, a := range cfg.Absent {
		if err := v.symlink(path.Join(allowedView, entries[i].Path), a.Path); err != nil {
			return fmt.Errorf("make %s: %w", a.Path, err)
		}
	}
	return nil
}

// linkAbsent makes the path of sm, a single-file encrypted mount whose file is absent, a
// symbolic link to where its volume serves it (exposedDir), so that the file looks absent and
// is made when the workload makes it, as in Gramine.
func (v *view) linkAbsent(sm stageMount) error {
	exposed := path.Join(exposedDir, strconv.Itoa(sm.Volume))
	if !v.exposed[sm.Volume] {
		if err := v.mountPoint(exposed, true); err != nil {
			return err
		}
		tree, err := unix.OpenTree(unix.AT_FDCWD, filepath.Join(volumesDir, strconv.Itoa(sm.Volume)), unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
		if err != nil {
			return fmt.Errorf("bind mount: %w", err)
		}
		defer unix.Close(tree)
		if err := bindAt(tree, exposed, unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV, false); err != nil {
			return err
		}
		if v.exposed == nil {
			v.exposed = map[int]bool{}
		}
		v.exposed[sm.Volume] = true
	}
	if err := v.symlink(path.Join(exposed, sm.Source), sm.Path); err != nil {
		return fmt.Errorf("make %s: %w", sm.Path, err)
	}
	return nil
}

// symlink makes p, a path in the workload's view, a symbolic link to target, shadowing the
// folder of p first where it is a folder of a chroot or encrypted mount (see shadow).
func (v *view) symlink(target, p string) error {
	dir := path.Dir(p)
	if err := v.mountPoint(dir, true); err != nil {
		return err
	}
	if in, ok := v.mountOf(dir); ok && in.Type != manifest.Tmpfs {
		if err := v.shadow(dir, in, path.Base(p)); err != nil {
			return fmt.Errorf("in the %s mount at %s: %w", in.Type, in.Path, err)
		}
	}
	if in, ok := v.mountOf(dir); ok && in.Type == manifest.Tmpfs {
		if err := v.unmake(p); err != nil {
			return err
		}
	}
	r, err := viewRoot()
	if err != nil {
		return err
	}
	defer r.Close()
	return r.Symlink(target, inView(p))
}

// unmake removes p, a name of a tmpfs of the view (ppml's own, such as a shadow, or the
// manifest's), where it is there: a name that a shadow bound to the host's name of the same
// path, which a mount of the manifest's at p replaces, as it would hide it.
func (v *view) unmake(p string) error {
	dir, err := openInView(path.Dir(p), unix.O_DIRECTORY|unix.O_RDONLY)
	if err != nil {
		return err
	}
	defer unix.Close(dir)
	fd, err := unix.Openat(dir, path.Base(p), unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("replace %s: %w", p, err)
	}
	var st unix.Stat_t
	err = unix.Fstat(fd, &st)
	if err == nil {
		// A bind made by shadow: detached, the tmpfs's own name is left to remove.
		err = unix.Unmount(fmt.Sprintf("/proc/self/fd/%d", fd), unix.MNT_DETACH)
		if errors.Is(err, unix.EINVAL) { // not a mount point
			err = nil
		}
	}
	unix.Close(fd)
	if err == nil {
		flags := 0
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			flags = unix.AT_REMOVEDIR
		}
		err = unix.Unlinkat(dir, path.Base(p), flags)
	}
	if err != nil {
		return fmt.Errorf("replace %s: %w", p, err)
	}
	v.mounted = slices.DeleteFunc(v.mounted, func(sm stageMount) bool {
		_, in := within(p, sm.Path)
		return in
	})
	return nil
}

// viewRoot opens the workload's root as it is now, for paths of the view resolved beneath it
// without following a symbolic link (hostdir). The view binds host folders, which the host
// may change while it is built: a folder on a path swapped for a link fails the build instead
// of leading a mount point, a tmpfs or a bind elsewhere, such as over a checked mount.
func viewRoot() (*hostdir.Root, error) { return hostdir.Open(rootDir) }

// inView returns p, a path of the workload's view, relative to its root.
func inView(p string) string { return strings.Trim(path.Clean(p), "/") }

// openInView opens p, a path of the workload's view, with flags (O_NOFOLLOW added), resolved
// as viewRoot says.
func openInView(p string, flags int) (int, error) {
	r, err := viewRoot()
	if err != nil {
		return -1, err
	}
	defer r.Close()
	return r.OpenFD(inView(p), flags|unix.O_NOFOLLOW, 0)
}

// bindAt attaches the detached mount tree at p, a mount point of the workload's view, with the
// MOUNT_ATTR_* attrs (on every mount of the tree if recursive).
func bindAt(tree int, p string, attrs uint64, recursive bool) error {
	flags := uint(unix.AT_EMPTY_PATH)
	if recursive {
		flags |= unix.AT_RECURSIVE
	}
	if err := unix.MountSetattr(tree, "", flags, &unix.MountAttr{Attr_set: attrs}); err != nil {
		return fmt.Errorf("set the mount's attributes: %w", err)
	}
	target, err := openInView(p, unix.O_PATH)
	if err != nil {
		return err
	}
	defer unix.Close(target)
	if err := unix.MoveMount(tree, "", target, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		return fmt.Errorf("bind mount at %s: %w", p, err)
	}
	return nil
}

// mountPoint makes sure that p, a path in the workload's view, exists in the root as a folder
// (dir) or a file. It creates what is missing on the root's own tmpfs or on a tmpfs mount; in a
// folder of a chroot or encrypted mount, which would change the host, it shadows the folder
// first (see shadow). It refuses symbolic links, which would lead outside the workload's root.
func (v *view) mountPoint(p string, dir bool) error {
	r, err := viewRoot()
	if err != nil {
		return err
	}
	defer func() { r.Close() }()
	cur := "/"
	for part := range strings.SplitSeq(strings.TrimPrefix(p, "/"), "/") {
		if part == "" {
			continue
		}
		parent := cur
		cur = path.Join(cur, part)
		var st syscall.Stat_t
		err := r.Stat(inView(cur), &st)
		switch {
		case err == nil && st.Mode&syscall.S_IFMT == syscall.S_IFLNK:
			return fmt.Errorf("the mount point's path holds a symbolic link: %s", cur)
		case err == nil:
			continue
		case !errors.Is(err, fs.ErrNotExist):
			return err
		}
		if in, ok := v.mountOf(parent); ok && in.Type != manifest.Tmpfs {
			if err := v.shadow(parent, in, ""); err != nil {
				return fmt.Errorf("make the mount point %s in the %s mount at %s: %w", cur, in.Type, in.Path, err)
			}
			// r is the root as it was: a shadow of the root itself lies over it.
			r.Close()
			if r, err = viewRoot(); err != nil {
				return err
			}
		}
		if cur != p || dir {
			err = r.Mkdir(inView(cur), 0o755)
		} else {
			var fd int
			if fd, err = r.OpenFD(inView(cur), unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW, 0o644); err == nil {
				unix.Close(fd)
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// shadow makes dir, a folder of the mount in of the workload's view, one whose mount points
// are made in the view and never on the host, as Gramine's LibOS makes them in its own tree of
// names: it mounts a tmpfs over dir that holds what dir holds, each name bound to what it is in
// dir (with whatever is mounted on it), but for symbolic links, which are copied. What is in
// dir's names is served as before, writable where it was; dir itself holds the names it had
// and the mount points made in it, and is read-only once the view is built (finish), so that
// the workload cannot make a name there that would be lost. The name omit, which the caller
// makes itself, is left out.
//
// dir is a host folder, which the host may swap for a link at any moment: it is opened once,
// resolved as viewRoot says, and the tmpfs, each name and each bind are reached through that
// descriptor and the tmpfs's own, never through a path again.
func (v *view) shadow(dir string, in stageMount, omit string) error {
	fd, err := openInView(dir, unix.O_DIRECTORY|unix.O_RDONLY)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), filepath.Join(rootDir, dir))
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	var nested []stageMount // mounts inside dir, which the binds below carry
	for _, sm := range v.mounted {
		if rel, ok := within(dir, sm.Path); ok && rel != "" {
			nested = append(nested, sm)
		}
	}
	if testHookShadow != nil {
		testHookShadow(dir)
	}
	tmp, err := newTmpfs(fmt.Sprintf("mode=%o,uid=%d,gid=%d", st.Mode&0o7777, st.Uid, st.Gid))
	if err != nil {
		return err
	}
	if err := unix.MoveMount(tmp, "", fd, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		unix.Close(tmp)
		return fmt.Errorf("mount a tmpfs at %s: %w", dir, err)
	}
	v.mounted = append(v.mounted, stageMount{Type: manifest.Tmpfs, Path: dir})
	v.shadows = append(v.shadows, tmp)
	attrs := uint64(unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV)
	if in.ReadOnly || in.Checked != "" {
		attrs |= unix.MOUNT_ATTR_RDONLY
	}
	slices.Sort(names)
	for _, name := range names {
		if name == omit {
			continue
		}
		if err := shadowName(fd, tmp, name, attrs); err != nil {
			return fmt.Errorf("%s: %w", path.Join(dir, name), err)
		}
		v.mounted = append(v.mounted, stageMount{Type: in.Type, Path: path.Join(dir, name), ReadOnly: in.ReadOnly, Checked: in.Checked})
	}
	v.mounted = append(v.mounted, nested...)
	return nil
}

// testHookShadow, if set, is called by shadow between opening the folder and mounting over it.
var testHookShadow func(dir string)

// shadowName makes name of the folder dir in the tmpfs tmp that shadows it: a copy of a
// symbolic link, or a bind of anything else, with the MOUNT_ATTR_* attrs.
func shadowName(dir, tmp int, name string, attrs uint64) error {
	fd, err := unix.Openat(dir, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFLNK:
		buf := make([]byte, unix.PathMax)
		n, err := unix.Readlinkat(fd, "", buf)
		if err != nil {
			return err
		}
		return unix.Symlinkat(string(buf[:n]), tmp, name)
	case unix.S_IFDIR:
		err = unix.Mkdirat(tmp, name, 0o755)
	default:
		var point int
		if point, err = unix.Openat(tmp, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o644); err == nil {
			unix.Close(point)
		}
	}
	if err != nil {
		return err
	}
	tree, err := unix.OpenTree(fd, "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE|unix.AT_EMPTY_PATH)
	if err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	defer unix.Close(tree)
	// The name's own mount only: a mount under it keeps its attributes (a device file its dev).
	if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH, &unix.MountAttr{Attr_set: attrs}); err != nil {
		return fmt.Errorf("set the mount's attributes: %w", err)
	}
	if err := unix.MoveMount(tree, "", tmp, name, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	return nil
}

// mountOf returns the mount that holds p, a path in the workload's view, if any.
func (v *view) mountOf(p string) (stageMount, bool) {
	for _, sm := range slices.Backward(v.mounted) {
		if _, ok := within(sm.Path, p); ok {
			return sm, true
		}
	}
	return stageMount{}, false
}

// teardown unmounts the workload's root, then the encrypted filesystems, which commit what was
// written to them and wipe their keys, and the trusted files' filesystem.
func (v *view) teardown() {
	if v.root >= 0 {
		unix.Close(v.root)
	}
	for _, tmp := range v.shadows {
		unix.Close(tmp)
	}
	// The binds in the root would keep the filesystems alive: they go first, with whatever a
	// mount at / stacked on the root.
	for unix.Unmount(rootDir, unix.MNT_DETACH) == nil {
	}
	done := make(chan struct{})
	go func() {
		for _, s := range v.volumes {
			if err := s.Unmount(); err != nil {
				v.log.Warn("unmount", "err", err)
			}
			s.Wait()
		}
		for _, s := range []*trustfs.Server{v.trusted, v.allowed} {
			if s == nil {
				continue
			}
			if err := s.Unmount(); err != nil {
				v.log.Warn("unmount", "err", err)
			}
			s.Wait()
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(unmountTimeout):
		v.log.Warn("the filesystems of the sandbox are still in use after the workload ended; they go away with the sandbox")
	}
}

// runWorkload starts the workload in the root (see startWorkload) and waits for it. It runs in
// a process group of its own, which takes the terminal over when the sandbox's standard input
// is the terminal, and which is killed when the workload ends.
func runWorkload(cfg *stageConfig, started func(pid int)) (int, error) {
	tty := foreground()
	cmd, err := startWorkload(cfg, tty)
	if err != nil {
		return 0, err
	}
	pid := cmd.Process.Pid
	started(pid)
	err = cmd.Wait()
	syscall.Kill(-pid, syscall.SIGKILL)
	if tty {
		signal.Ignore(syscall.SIGTTOU)
		unix.IoctlSetPointerInt(0, unix.TIOCSPGRP, unix.Getpgrp())
	}
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		return 0, err
	}
	ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		return 128 + int(ws.Signal()), nil
	}
	return ws.ExitStatus(), nil
}

// foreground reports whether the standard input is a terminal whose foreground process group is
// the sandbox's.
func foreground() bool {
	if !term.IsTerminal(0) {
		return false
	}
	pgrp, err := unix.IoctlGetInt(0, unix.TIOCGPGRP)
	return err == nil && pgrp == unix.Getpgrp()
}

// mountTmpfs mounts an empty tmpfs at dir, a path of the sandbox's own.
func mountTmpfs(dir, options string) error {
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, options); err != nil {
		return fmt.Errorf("mount a tmpfs at %s: %w", dir, err)
	}
	return nil
}

// mountTmpfsAt mounts an empty tmpfs at p, a mount point of the workload's view.
func mountTmpfsAt(p, options string) error {
	tmp, err := newTmpfs(options)
	if err != nil {
		return err
	}
	defer unix.Close(tmp)
	return bindAt(tmp, p, 0, false)
}

// newTmpfs returns a new tmpfs, detached, with the comma-separated KEY=VALUE options.
func newTmpfs(options string) (int, error) {
	fsfd, err := unix.Fsopen("tmpfs", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("make a tmpfs: %w", err)
	}
	defer unix.Close(fsfd)
	for opt := range strings.SplitSeq(options, ",") {
		key, value, _ := strings.Cut(opt, "=")
		if err := unix.FsconfigSetString(fsfd, key, value); err != nil {
			return -1, fmt.Errorf("make a tmpfs with %s: %w", opt, err)
		}
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return -1, fmt.Errorf("make a tmpfs: %w", err)
	}
	tmp, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV)
	if err != nil {
		return -1, fmt.Errorf("make a tmpfs: %w", err)
	}
	return tmp, nil
}
