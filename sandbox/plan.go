package sandbox

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/ppml/ppml/manifest"
	"github.com/ppml/ppml/pf"
	"github.com/ppml/ppml/trustfs"
)

// stageConfig is what the sandbox process needs to build the workload's view and start it. It
// travels to the sandbox process over a pipe, keys included.
type stageConfig struct {
	Volumes []volume
	// Mounts are fs.root's at "/", unless the view's own empty root serves it, then fs.mounts'
	// (and ppml.gpus'), in order.
	Mounts []stageMount
	Path   string   // the entrypoint, in the workload's view
	Args   []string // argv, argv[0] included
	Env    []string
	Dir    string // fs.start_dir
	// UID and GID are loader.uid and loader.gid, the workload's user and group.
	UID, GID uint32
	// KeyNames are the names of the keys that follow the configuration on its pipe.
	KeyNames []string
	// Trusted are the entries of the trusted files' filesystem (package trustfs), which serves
	// the chroot mounts whose Checked is set.
	Trusted entryTable
	// CheckAhead are the trusted files to check ahead of their opens (trustfs.Options).
	CheckAhead []string
	// NetNS says that the workload has a network namespace of its own, which the sandbox
	// process receives at netnsFD; Mesh, that it is ppml.network "mesh".
	NetNS, Mesh bool
	// Devices are the host's device nodes that the workload gets, relative to /dev: those of
	// devices that the host has, and those that ppml.gpus gives it (gpu.go).
	Devices []string
	// System are the files and folders of cpuDescription that the host has.
	System []string
	// Absent are the allowed files of read-only chroot mounts that the workload may create.
	Absent []absentFile
}

// volume is one encfs filesystem: a host folder of protected files.
type volume struct {
	Host    string // absolute, without symbolic links
	Prefix  string // encfs.Options.BoundPrefix
	KeyName string
}

// stageMount is one of fs.mounts, resolved on the host.
type stageMount struct {
	Type string // manifest.Chroot, manifest.Encrypted or manifest.Tmpfs
	Path string // in the workload's view, cleaned
	// Source is, for a chroot mount, the absolute host path without symbolic links; for an
	// encrypted one, the file's name in its volume, or "" for the whole volume.
	Source   string
	Volume   int  // encrypted: the index of its volume
	ReadOnly bool // chroot: it lies in no sgx.allowed_files entry
	// Checked is, for a chroot mount that the trusted files' filesystem serves, its name at that
	// filesystem's root; "" binds Source as it is.
	Checked string
}

// plan resolves m for the sandbox process. args are the command line's arguments.
func plan(m *manifest.Manifest, args []string, log *slog.Logger) (*stageConfig, error) {
	cfg := &stageConfig{Path: m.Entrypoint, Dir: m.StartDir, Env: Environment(m), UID: m.UID, GID: m.GID, Mesh: m.Network == manifest.NetworkMesh}
	if m.UseHostEnv {
		log.Warn("loader.insecure__use_host_env: the workload gets the host's environment, which the host chooses (insecure, as in Gramine: for development only)")
	}
	switch {
	case m.UseCmdlineArgv:
		cfg.Args = append([]string{m.Entrypoint}, args...)
	case len(args) > 0:
		return nil, errors.New("the manifest takes no arguments from the command line: give them in loader.argv, or set loader.insecure__use_cmdline_argv")
	case m.Argv != nil:
		cfg.Args = m.Argv
	default:
		cfg.Args = []string{m.Entrypoint}
	}
	wd, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	if err := m.CheckHashed(); err != nil {
		return nil, err
	}
	files := trustedFiles(m, wd)
	mounts := append([]manifest.Mount{m.Root}, m.Mounts...)
	cfg.Devices, cfg.System = existing("/dev", devices), existing("/", cpuDescription)
	if m.GPUs != 0 {
		ldconfig, err := ldconfigCache()
		if err != nil {
			return nil, err
		}
		g, err := planGPUs(m, "/dev", ldconfig)
		if err != nil {
			return nil, err
		}
		cfg.Devices = append(cfg.Devices, g.devices...)
		files = append(files, g.files...)
		mounts = append(mounts, g.mounts...)
	}
	allowed := make([]allowedEntry, len(m.AllowedFiles))
	for i, uri := range m.AllowedFiles {
		allowed[i] = allowedEntry{host: inFolder(wd, strings.TrimPrefix(uri, "file:")), folder: strings.HasSuffix(uri, "/")}
	}
	for i, mt := range mounts {
		sm := stageMount{Type: mt.Type, Path: path.Clean(mt.Path)}
		err = nil
		switch mt.Type {
		case manifest.Chroot:
			sm.Source, err = filepath.EvalSymlinks(inFolder(wd, mt.HostPath()))
			if errors.Is(err, fs.ErrNotExist) && i > 0 {
				log.Warn("a chroot mount's host path does not exist: the workload does not see it", "mount", sm.Path, "host", mt.HostPath())
				continue
			}
			if err != nil {
				break
			}
			cfg.cover(sm.Path)
			sm.ReadOnly = !slices.ContainsFunc(allowed, func(a allowedEntry) bool { _, in := within(a.host, sm.Source); return in })
			if sm.ReadOnly {
				var writable []stageMount
				var absent []absentFile
				if writable, absent, err = allowedIn(sm, allowed, log); err == nil {
					cfg.Absent = append(cfg.Absent, absent...)
					if cfg.check(&sm, inFolder(wd, mt.HostPath()), files, writable, m.FileCheckPolicy, log) {
						cfg.Mounts = append(cfg.Mounts, sm)
					}
					cfg.Mounts = append(cfg.Mounts, writable...)
					continue
				}
			}
		case manifest.Encrypted:
			var v volume
			if v, sm.Source, err = encryptedVolume(mt, wd); err == nil {
				sm.Volume = cfg.volume(v)
			}
		}
		if err != nil {
			if i == 0 {
				return nil, fmt.Errorf("fs.root: %w", err)
			}
			return nil, fmt.Errorf("fs.mounts[%d] (%s): %w", i-1, sm.Path, err)
		}
		cfg.cover(sm.Path)
		cfg.Mounts = append(cfg.Mounts, sm)
	}
	if err := checkOverlap(cfg); err != nil {
		return nil, err
	}
	for _, f := range files {
		if f.err != nil {
			return nil, f.err
		}
	}
	cfg.dropHidden()
	if err := cfg.mountPoints(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// trustedFile is a trusted file of the manifest.
type trustedFile struct {
	path string // its absolute host path, as the manifest names it
	host string // its absolute host path without symbolic links
	err  error  // why it has none: it does not exist, say
	sum  [sha256.Size]byte
}

// trustedFiles resolves the trusted files of m, which are hashed, on the host, relative paths
// being relative to the folder wd. Each must exist, but its content is checked only when the
// workload opens it. The files are shared out in runs, one to a core: tens of thousands of
// lookups take a tenth of a second.
func trustedFiles(m *manifest.Manifest, wd string) []trustedFile {
	files := make([]trustedFile, len(m.TrustedFiles))
	workers := min(runtime.GOMAXPROCS(0), len(files)/1000+1)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			folders := resolver{} // the files of a run share their folders
			for i := w * len(files) / workers; i < (w+1)*len(files)/workers; i++ {
				tf, f := m.TrustedFiles[i], &files[i]
				f.path = inFolder(wd, tf.Path())
				if f.host, f.err = folders.resolve(f.path); f.err != nil {
					f.err = fmt.Errorf("trusted file %s: %w", tf.Path(), f.err)
				}
				hex.Decode(f.sum[:], []byte(tf.SHA256)) // 64 hex digits, as Parse checked
			}
		})
	}
	wg.Wait()
	return files
}

// resolver resolves clean absolute host paths as filepath.EvalSymlinks does, remembering the
// folders it resolved: the trusted files of an installation share a few.
type resolver map[string]string

// resolve returns p without symbolic links.
func (r resolver) resolve(p string) (string, error) {
	if p == "/" {
		return p, nil
	}
	dir, ok := r[filepath.Dir(p)]
	if !ok {
		var err error
		if dir, err = r.resolve(filepath.Dir(p)); err != nil {
			return "", err
		}
		r[filepath.Dir(p)] = dir
	}
	q := filepath.Join(dir, filepath.Base(p))
	info, err := os.Lstat(q)
	switch {
	case err != nil:
		return "", err
	case info.Mode()&fs.ModeSymlink != 0:
		return filepath.EvalSymlinks(q)
	}
	return q, nil
}

// check makes the trusted files' filesystem serve sm, a read-only chroot mount whose URI names
// the absolute host path uri, adding its entries to c.Trusted: the trusted files in it (by
// their paths as the manifest names them, as Gramine finds them) and, as mount points, the
// sgx.allowed_files entries in it, which writable binds cover. Under allow_all_but_log, the
// mount's other files are served too, unchecked, and a mount that holds no trusted file is
// bound as it is instead. It reports false for a mount that serves nothing, which the workload
// does not see: under strict, a single file that is not trusted.
func (c *stageConfig) check(sm *stageMount, uri string, files []trustedFile, writable []stageMount, policy string, log *slog.Logger) bool {
	name := strconv.Itoa(len(c.Mounts))
	var entries []trustfs.Entry
	for _, f := range files {
		if rel, ok := within(uri, f.path); ok && f.err == nil {
			p := name // path.Join(name, rel) without its Clean: both are clean, and there are thousands
			if rel != "" {
				p += "/" + rel
			}
			entries = append(entries, trustfs.Entry{Path: p, Kind: trustfs.Trusted, Host: f.host[1:], SHA256: f.sum})
		}
	}
	info, err := os.Stat(sm.Source)
	dir := err == nil && info.IsDir()
	switch {
	case policy == manifest.AllowAllButLog && len(entries) == 0:
		log.Info("sgx.file_check_policy allow_all_but_log: a plain mount that holds no trusted file is served unchecked", "mount", sm.Path, "host", sm.Source)
		return true
	case policy == manifest.AllowAllButLog && dir:
		log.Info("sgx.file_check_policy allow_all_but_log: the files of a plain mount that are not trusted are served unchecked", "mount", sm.Path, "host", sm.Source)
		entries = append([]trustfs.Entry{{Path: name, Kind: trustfs.Unchecked, Host: sm.Source[1:]}}, entries...)
	case len(entries) == 0 && sm.Path == "/" && len(writable) == 0:
		return false // the view's own root is that empty folder
	case len(entries) == 0 && sm.Path == "/":
		entries = append(entries, trustfs.Entry{Path: name, Kind: trustfs.Folder})
	case len(entries) == 0 && !dir:
		log.Warn("a plain mount's file is not trusted: the workload does not see it (sgx.file_check_policy is strict)", "mount", sm.Path, "host", sm.Source)
		return false
	case len(entries) == 0:
		log.Warn("a plain mount holds no trusted file: the workload sees it empty (sgx.file_check_policy is strict; allow_all_but_log would serve its files unchecked)", "mount", sm.Path, "host", sm.Source)
		entries = append(entries, trustfs.Entry{Path: name, Kind: trustfs.Folder})
	}
	for _, w := range writable {
		rel, _ := within(sm.Path, w.Path)
		p := path.Join(name, rel)
		if !slices.ContainsFunc(entries, func(e trustfs.Entry) bool { return e.Path == p }) {
			entries = append(entries, trustfs.Entry{Path: p, Kind: trustfs.Unchecked, Host: w.Source[1:]})
		}
	}
	sm.Checked = name
	c.Trusted = append(c.Trusted, entries...)
	return true
}

// dropHidden drops the entries of the trusted files' filesystem that a later mount inside theirs
// hides from the workload: the tutorial's Python folders, mounted inside /usr/lib, which is
// mounted too, would otherwise send most of its 25,000 trusted files twice.
func (c *stageConfig) dropHidden() {
	hiding := map[string][]string{} // for each mount served, by name: the later mounts in it, relative to it
	for i, sm := range c.Mounts {
		if sm.Checked == "" {
			continue
		}
		for _, later := range c.Mounts[i+1:] {
			if rel, in := within(sm.Path, later.Path); in && rel != "" {
				hiding[sm.Checked] = append(hiding[sm.Checked], rel+"/")
			}
		}
	}
	if len(hiding) == 0 {
		return
	}
	c.Trusted = slices.DeleteFunc(c.Trusted, func(e trustfs.Entry) bool {
		name, rel, _ := strings.Cut(e.Path, "/")
		return slices.ContainsFunc(hiding[name], func(later string) bool { return strings.HasPrefix(rel, later) })
	})
}

// mountPoints adds to the trusted files' filesystem the mount points that the mounts need in
// the mounts it serves that hold nothing of the host folder but trusted and allowed files: an
// empty folder or file where a later mount lies inside one, unless it serves something there
// already. A mount that serves its host folder unchecked (allow_all_but_log) holds the mount
// points that the host folder does, as a bind mount would.
func (c *stageConfig) mountPoints() error {
	served := map[string]trustfs.Kind{}
	for _, e := range c.Trusted {
		served[e.Path] = e.Kind
	}
	for i, in := range c.Mounts {
		if kind, ok := served[in.Checked]; in.Checked == "" || ok && kind == trustfs.Unchecked {
			continue
		}
		later := c.Mounts[i+1:]
		if in.Path == "/" {
			later = append(c.provided(), later...)
		}
		for _, sm := range later {
			rel, ok := within(in.Path, sm.Path)
			p := path.Join(in.Checked, rel)
			if _, done := served[p]; !ok || rel == "" || done {
				continue
			}
			kind := trustfs.Folder
			switch sm.Type {
			case manifest.Chroot:
				info, err := os.Stat(sm.Source)
				if err != nil {
					return err
				}
				if !info.IsDir() {
					kind = trustfs.File
				}
			case manifest.Encrypted:
				if sm.Source == "" {
					break
				}
				if _, err := os.Lstat(filepath.Join(c.Volumes[sm.Volume].Host, sm.Source)); errors.Is(err, fs.ErrNotExist) {
					continue // its path is a link that the view makes (stage.go, linkAbsent)
				}
				kind = trustfs.File
			}
			c.Trusted = append(c.Trusted, trustfs.Entry{Path: p, Kind: kind})
			served[p] = kind
		}
	}
	return nil
}

// provided returns the mounts of what ppml provides in every view, over the root and under
// fs.mounts: the device files of c.Devices and the system files of c.System.
func (c *stageConfig) provided() []stageMount {
	var mounts []stageMount
	for _, dev := range c.Devices {
		p := path.Join("/dev", dev)
		mounts = append(mounts, stageMount{Type: manifest.Chroot, Path: p, Source: p})
	}
	for _, p := range c.System {
		mounts = append(mounts, stageMount{Type: manifest.Chroot, Path: p, Source: p, ReadOnly: true})
	}
	return mounts
}

// existing returns the names, relative to the host folder dir, that the host has.
func existing(dir string, names []string) []string {
	var found []string
	for _, name := range names {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			found = append(found, name)
		}
	}
	return found
}

// allowedEntry is an sgx.allowed_files entry.
type allowedEntry struct {
	host   string // absolute
	folder bool   // its URI ends in "/"
}

// absentFile is an sgx.allowed_files file of a read-only chroot mount that is not on the host
// yet: absent from the view until the workload creates it (stage.go, linkAllowed).
type absentFile struct {
	Path string // in the workload's view
	Host string // absolute, its folder without symbolic links
}

// cover drops the absent allowed files of the mounts so far that a mount at p hides.
func (c *stageConfig) cover(p string) {
	c.Absent = slices.DeleteFunc(c.Absent, func(a absentFile) bool { _, in := within(p, a.Path); return in })
}

// allowedIn returns the writable mounts of the sgx.allowed_files entries that lie inside sm, a
// read-only chroot mount: each allowed file or folder is bound over itself, so that the
// workload may write it and nothing else of the mount; and the allowed files there that are
// not on the host yet, which the workload may create. An entry must not lead outside sm by a
// symbolic link; an absent folder, or an absent file whose folder is absent too, is left out.
func allowedIn(sm stageMount, allowed []allowedEntry, log *slog.Logger) ([]stageMount, []absentFile, error) {
	var mounts []stageMount
	var absent []absentFile
	for _, a := range allowed {
		if _, in := within(sm.Source, a.host); !in {
			continue
		}
		host, err := filepath.EvalSymlinks(a.host)
		if errors.Is(err, fs.ErrNotExist) && !a.folder {
			// Its folder, then: the file is made there.
			if host, err = filepath.EvalSymlinks(filepath.Dir(a.host)); err == nil {
				host = filepath.Join(host, filepath.Base(a.host))
			}
		}
		if errors.Is(err, fs.ErrNotExist) {
			log.Warn("an sgx.allowed_files entry is absent, and so is its folder: the workload does not see it", "mount", sm.Path, "host", a.host)
			continue
		} else if err != nil {
			return nil, nil, fmt.Errorf("sgx.allowed_files: %w", err)
		}
		rel, in := within(sm.Source, host)
		if !in {
			return nil, nil, fmt.Errorf("sgx.allowed_files: %s leads outside the mount of %s (to %s)", a.host, sm.Source, host)
		}
		p := path.Join(sm.Path, filepath.ToSlash(rel))
		if _, err := os.Lstat(host); errors.Is(err, fs.ErrNotExist) {
			absent = append(absent, absentFile{Path: p, Host: host})
			continue
		}
		mounts = append(mounts, stageMount{Type: manifest.Chroot, Path: p, Source: host})
	}
	return mounts, absent, nil
}

// volume returns the index of v in c.Volumes, adding it if it is not there yet: mounts of files
// in the same folder with the same key share one encfs filesystem.
func (c *stageConfig) volume(v volume) int {
	i := slices.Index(c.Volumes, v)
	if i < 0 {
		i = len(c.Volumes)
		c.Volumes = append(c.Volumes, v)
	}
	return i
}

// encryptedVolume returns the encfs volume that serves the encrypted mount mt, and the name of
// its file in the volume for a single-file mount. A host path that is not a folder, or does not
// exist yet, is a single file: its volume is its folder. A path or URI that ends in "/" names a
// folder, which must exist. Relative host paths are relative to wd.
func encryptedVolume(mt manifest.Mount, wd string) (volume, string, error) {
	uri := mt.HostPath()
	v := volume{KeyName: mt.KeyName, Prefix: pf.NormalizePath(uri)}
	host, err := filepath.EvalSymlinks(inFolder(wd, uri))
	switch {
	case err == nil:
		if info, err := os.Stat(host); err == nil && info.IsDir() {
			v.Host = host
			return v, "", nil
		}
	case !errors.Is(err, fs.ErrNotExist):
		return v, "", err
	case strings.HasSuffix(uri, "/") || strings.HasSuffix(mt.Path, "/"):
		return v, "", fmt.Errorf("the encrypted folder %s does not exist: make it (mkdir -p %s) before ppml run", mt.URI, uri)
	}
	dir, name := filepath.Split(inFolder(wd, uri))
	if v.Host, err = filepath.EvalSymlinks(dir); err != nil {
		return v, "", fmt.Errorf("the folder of %s: %w", uri, err)
	}
	v.Prefix = pf.NormalizePath(path.Dir(uri))
	return v, name, nil
}

// checkOverlap refuses encrypted mounts whose files overlap on the host: two filesystems would
// then serve the same files.
func checkOverlap(cfg *stageConfig) error {
	files := make([]string, len(cfg.Mounts))
	for i, sm := range cfg.Mounts {
		if sm.Type == manifest.Encrypted {
			files[i] = filepath.Join(cfg.Volumes[sm.Volume].Host, sm.Source)
		}
	}
	for i, a := range files {
		for j, b := range files[:i] {
			if a != "" && b != "" && overlap(a, b) {
				return fmt.Errorf("the encrypted mounts at %s and %s overlap on the host (%s, %s)", cfg.Mounts[j].Path, cfg.Mounts[i].Path, b, a)
			}
		}
	}
	return nil
}

// inFolder returns the host path p, relative paths being relative to the folder wd.
func inFolder(wd, p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(wd, p)
}

// overlap reports whether one of the paths a and b is the other or inside it.
func overlap(a, b string) bool {
	_, in := within(a, b)
	_, over := within(b, a)
	return in || over
}

// Environment returns the workload's environment: loader.env (over ppml's own environment with
// loader.insecure__use_host_env, as in Gramine), without what only makes sense inside Gramine:
// the SECRET_PROVISION_* variables of libsecret_prov_attest.so, and that library in LD_PRELOAD
// (ppml provisions the keys itself).
func Environment(m *manifest.Manifest) []string {
	vars := m.Env
	if m.UseHostEnv {
		vars = map[string]manifest.EnvVar{}
		for _, kv := range os.Environ() {
			if name, value, ok := strings.Cut(kv, "="); ok && name != "" {
				vars[name] = manifest.EnvVar{Value: value}
			}
		}
		for name, v := range m.Env {
			if !v.Passthrough { // the host's value is there already
				vars[name] = v
			}
		}
	}
	env := []string{}
	for _, name := range slices.Sorted(maps.Keys(vars)) {
		v := vars[name]
		value, ok := v.Value, true
		if v.Passthrough {
			value, ok = os.LookupEnv(name)
		}
		if name == "LD_PRELOAD" {
			value = strings.Join(slices.DeleteFunc(strings.FieldsFunc(value, func(r rune) bool { return r == ':' || r == ' ' }), func(lib string) bool {
				return path.Base(lib) == "libsecret_prov_attest.so"
			}), ":")
			ok = value != ""
		}
		if ok && !strings.HasPrefix(name, "SECRET_PROVISION_") {
			env = append(env, name+"="+value)
		}
	}
	return env
}

// fileNames returns the names that the single-file encrypted mounts of volume i serve, or nil
// for a folder's volume, which serves all it holds.
func (c *stageConfig) fileNames(i int) []string {
	var names []string
	for _, sm := range c.Mounts {
		if sm.Type == manifest.Encrypted && sm.Volume == i && sm.Source != "" {
			names = append(names, sm.Source)
		}
	}
	return names
}
