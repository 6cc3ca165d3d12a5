package manifest

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/BurntSushi/toml"
)

// Manifest is a parsed manifest. Its fields are what ppml uses, read from the document with
// Gramine's defaults filled in. Like the fields of an x509.Certificate, they are a view: changing
// them does not change the document, whose canonical form (Canonical) is what Measure hashes.
type Manifest struct {
	// Entrypoint is libos.entrypoint: the first executable, a path in the workload's view.
	Entrypoint string
	// Argv is loader.argv, nil when the manifest has none.
	Argv []string
	// UseCmdlineArgv is loader.insecure__use_cmdline_argv: the arguments come from the command
	// line. It excludes Argv.
	UseCmdlineArgv bool
	// Env is loader.env: the workload's whole environment, unless UseHostEnv.
	Env map[string]EnvVar
	// UseHostEnv is loader.insecure__use_host_env: the workload's environment is the host's,
	// with Env's values over it.
	UseHostEnv bool
	// LogLevel is loader.log_level: none, error (the default), warning, debug, trace or all.
	LogLevel string
	// UID and GID are loader.uid and loader.gid: the user and group the workload runs as,
	// 65534 (nobody and nogroup) by default. Gramine's default is 0, but its LibOS only emulates
	// the IDs, while ppml really runs the workload as this user.
	UID, GID uint32
	// StartDir is fs.start_dir, the workload's working folder ("/" by default).
	StartDir string
	// Root is fs.root, the mount at "/" under Mounts: by default, as in Gramine, the folder
	// that ppml runs in (a Chroot mount of "file:.").
	Root Mount
	// Mounts is fs.mounts, in order.
	Mounts []Mount
	// TrustedFiles is sgx.trusted_files, in order.
	TrustedFiles []TrustedFile
	// AllowedFiles is sgx.allowed_files: "file:" URIs the workload may use unchecked.
	AllowedFiles []string
	// FileCheckPolicy is sgx.file_check_policy: Strict (the default), under which the
	// workload's plain mounts hold only its trusted and allowed files, or AllowAllButLog, under
	// which they also hold their other files, unchecked.
	FileCheckPolicy string
	// Debug is sgx.debug: the workload reports itself as debuggable.
	Debug bool
	// ISVProdID and ISVSVN are sgx.isvprodid and sgx.isvsvn, reported with MRSIGNER.
	ISVProdID, ISVSVN uint16
	// RemoteAttestation is sgx.remote_attestation: "none" (the default) or "dcap".
	RemoteAttestation string
	// GPUs is ppml.gpus: how many of the host's NVIDIA GPUs the workload gets, AllGPUs for all
	// of them, 0 (the default) for none (gpu.go).
	GPUs int
	// Provisioning is where the keys of encrypted mounts come from.
	Provisioning Provisioning
	// Network is ppml.network: NetworkNone (the default), NetworkHost or NetworkMesh.
	Network string
	// Job is ppml.job, the job of the provisioning server's policy whose mesh the workload
	// joins: required with NetworkMesh, and only with it.
	Job string

	canonical []byte

	indexOnce sync.Once
	index     map[string]string // absolute host path of each trusted file → its SHA-256
	indexErr  error
}

// EnvVar is one loader.env entry: a value (NAME = "v" or { value = "v" }), or the value of the
// same variable in ppml's own environment ({ passthrough = true }).
type EnvVar struct {
	Value       string
	Passthrough bool
}

// UnmarshalTOML reads the three forms Gramine accepts.
func (e *EnvVar) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case string:
		e.Value = v
		return nil
	case map[string]any:
		if len(v) == 1 {
			if s, ok := v["value"].(string); ok {
				e.Value = s
				return nil
			}
			if b, ok := v["passthrough"].(bool); ok && b {
				e.Passthrough = true
				return nil
			}
		}
	}
	return errors.New(`an environment variable is "VALUE", { value = "VALUE" } or { passthrough = true }`)
}

// File-check policies (sgx.file_check_policy).
const (
	Strict         = "strict"
	AllowAllButLog = "allow_all_but_log"
)

// Network modes (ppml.network).
const (
	NetworkNone = "none" // a network namespace of its own with loopback only
	NetworkHost = "host" // the host's network namespace
	NetworkMesh = "mesh" // loopback and an encrypted tunnel to the job's other nodes
)

// Mount types.
const (
	Chroot    = "chroot"    // a host folder or file, as it is
	Encrypted = "encrypted" // Gramine protected files, decrypted with the key KeyName
	Tmpfs     = "tmpfs"     // an empty folder in memory
)

// Mount is one entry of fs.mounts.
type Mount struct {
	Type    string `toml:"type"`     // Chroot (the default), Encrypted or Tmpfs
	Path    string `toml:"path"`     // where the workload sees it: an absolute path
	URI     string `toml:"uri"`      // "file:HOST-PATH"; ignored for tmpfs
	KeyName string `toml:"key_name"` // the key of an encrypted mount: "default" by default
}

// HostPath is the host path of the mount's URI.
func (m Mount) HostPath() string { return strings.TrimPrefix(m.URI, "file:") }

// TrustedFile is one entry of sgx.trusted_files.
type TrustedFile struct {
	// URI is "file:PATH". Before HashTrustedFiles, a PATH ending in "/" is a folder.
	URI string
	// SHA256 is the file's hash in lowercase hex, "" until HashTrustedFiles.
	SHA256 string
}

// Path is the host path of the URI, relative paths being relative to the folder ppml runs in.
func (t TrustedFile) Path() string { return strings.TrimPrefix(t.URI, "file:") }

// isSHA256Hex reports whether s is 64 lowercase hex digits (a regular expression took a tenth
// of the parse of a manifest with tens of thousands of trusted files).
func isSHA256Hex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range []byte(s) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// UnmarshalTOML reads "file:PATH" or { uri = "file:PATH", sha256 = "HEX" }.
func (t *TrustedFile) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case string:
		t.URI = v
	case map[string]any:
		for k, x := range v {
			s, ok := x.(string)
			switch {
			case !ok:
				return fmt.Errorf("a trusted file's %s must be a string", k)
			case k == "uri":
				t.URI = s
			case k == "sha256":
				t.SHA256 = s
			default:
				return fmt.Errorf("a trusted file has no key %q (only uri and sha256)", k)
			}
		}
	default:
		return errors.New(`a trusted file is "file:PATH" or { uri = "file:PATH", sha256 = "HEX" }`)
	}
	if err := checkURI(t.URI); err != nil {
		return err
	}
	if t.SHA256 != "" && !isSHA256Hex(t.SHA256) {
		return fmt.Errorf("trusted file %s: sha256 %q is not 64 lowercase hex digits", t.URI, t.SHA256)
	}
	return nil
}

func checkURI(uri string) error {
	if !strings.HasPrefix(uri, "file:") || uri == "file:" {
		return fmt.Errorf("URI %q is not file:PATH", uri)
	}
	return nil
}

// Provisioning holds the secret-provisioning settings of Gramine's libsecret_prov_attest.so,
// which ppml reads from the same loader.env variables.
type Provisioning struct {
	// Servers are SECRET_PROVISION_SERVERS, as host:port, to be tried in order. The variable
	// is a list separated by commas, semicolons or spaces; Gramine's default is localhost:4433.
	Servers []string
	// CAChainPath is SECRET_PROVISION_CA_CHAIN_PATH: the PEM file, in the workload's view, of
	// the CA certificates that the server's certificate must chain to. "" when not set.
	CAChainPath string
	// SetKey is SECRET_PROVISION_SET_KEY: the name of the key that the provisioned secret
	// becomes, as used by encrypted mounts' key_name. "" when not set.
	SetKey string
}

const defaultServer = "localhost:4433"

// The user and group the workload runs as by default: nobody and nogroup, which own nothing.
const (
	nobody  = 65534
	nogroup = 65534
)

// ParseFile reads and parses a manifest file; errors name the file.
func ParseFile(name string) (*Manifest, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	m, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return m, nil
}

// Parse parses a TOML manifest. Keys of Gramine's manifest schema that ppml has no use for are
// accepted and ignored (see the package documentation); unknown keys, and the Gramine keys that
// ppml cannot honour, are errors naming them.
func Parse(b []byte) (*Manifest, error) {
	// Parsed once (a manifest lists every trusted file: tens of thousands for PyTorch's), then
	// decoded twice: the document, which leaves the keys it does not know undecoded, and the
	// tree of every key, which the canonical form encodes.
	var whole toml.Primitive
	md, err := toml.Decode(string(b), &whole)
	if err != nil {
		return nil, err
	}
	var d document
	if err := md.PrimitiveDecode(whole, &d); err != nil {
		return nil, err
	}
	if err := checkKeys(md.Undecoded()); err != nil {
		return nil, err
	}
	var tree map[string]any
	if err := md.PrimitiveDecode(whole, &tree); err != nil {
		return nil, err
	}
	canonical, err := encode(tree)
	if err != nil {
		return nil, err
	}
	m := &Manifest{
		Entrypoint:        d.LibOS.Entrypoint,
		Argv:              d.Loader.Argv,
		UseCmdlineArgv:    d.Loader.UseCmdlineArgv,
		UseHostEnv:        d.Loader.UseHostEnv,
		Env:               d.Loader.Env,
		LogLevel:          cmp.Or(d.Loader.LogLevel, "error"),
		UID:               orDefault(d.Loader.UID, nobody),
		GID:               orDefault(d.Loader.GID, nogroup),
		StartDir:          cmp.Or(d.FS.StartDir, "/"),
		Mounts:            d.FS.Mounts,
		TrustedFiles:      d.SGX.TrustedFiles,
		AllowedFiles:      d.SGX.AllowedFiles,
		FileCheckPolicy:   cmp.Or(d.SGX.FileCheckPolicy, Strict),
		Debug:             d.SGX.Debug,
		ISVProdID:         d.SGX.ISVProdID,
		ISVSVN:            d.SGX.ISVSVN,
		RemoteAttestation: cmp.Or(d.SGX.RemoteAttestation, "none"),
		Network:           cmp.Or(d.PPML.Network, NetworkNone),
		Job:               d.PPML.Job,
		canonical:         canonical,
	}
	if m.Env == nil {
		m.Env = map[string]EnvVar{}
	}
	if m.Root, err = rootMount(d.FS.Root); err != nil {
		return nil, err
	}
	if m.GPUs, err = parseGPUs(d.PPML.GPUCount); err != nil {
		return nil, err
	}
	if err := m.check(); err != nil {
		return nil, err
	}
	return m, nil
}

// orDefault returns *v, or def when v is nil.
func orDefault[T any](v *T, def T) T {
	if v == nil {
		return def
	}
	return *v
}

// check validates the fields and fills in the defaults that depend on others.
func (m *Manifest) check() error {
	switch {
	case m.Entrypoint == "":
		return errors.New("libos.entrypoint is missing: name the workload's first executable")
	case strings.HasPrefix(m.Entrypoint, "file:"):
		return fmt.Errorf("libos.entrypoint %q: write a path in the workload's view, without file:", m.Entrypoint)
	case m.Argv != nil && m.UseCmdlineArgv:
		return errors.New("loader.argv and loader.insecure__use_cmdline_argv exclude each other: keep one")
	case !slices.Contains([]string{"none", "error", "warning", "debug", "trace", "all"}, m.LogLevel):
		return fmt.Errorf("loader.log_level %q is not none, error, warning, debug, trace or all", m.LogLevel)
	case m.UID == math.MaxUint32:
		return errors.New("loader.uid 4294967295 is not a user ID (it is -1 for the kernel, which means no change)")
	case m.GID == math.MaxUint32:
		return errors.New("loader.gid 4294967295 is not a group ID (it is -1 for the kernel, which means no change)")
	case !path.IsAbs(m.StartDir):
		return fmt.Errorf("fs.start_dir %q is not an absolute path", m.StartDir)
	case m.RemoteAttestation == "epid":
		return errors.New(`sgx.remote_attestation "epid": EPID attestation is retired; use "dcap"`)
	case m.RemoteAttestation != "none" && m.RemoteAttestation != "dcap":
		return fmt.Errorf("sgx.remote_attestation %q is not none or dcap", m.RemoteAttestation)
	case m.FileCheckPolicy != Strict && m.FileCheckPolicy != AllowAllButLog:
		return fmt.Errorf("sgx.file_check_policy %q is not %s or %s", m.FileCheckPolicy, Strict, AllowAllButLog)
	case m.Network != NetworkNone && m.Network != NetworkHost && m.Network != NetworkMesh:
		return fmt.Errorf("ppml.network %q is not %s, %s or %s", m.Network, NetworkNone, NetworkHost, NetworkMesh)
	case m.Network == NetworkMesh && !validJob(m.Job):
		return fmt.Errorf("ppml.network %q needs ppml.job, the name of the job in the provisioning server's policy (1 to 64 letters, digits, '.', '_' or '-'), not %q", NetworkMesh, m.Job)
	case m.Network != NetworkMesh && m.Job != "":
		return fmt.Errorf("ppml.job is only for ppml.network = %q", NetworkMesh)
	}
	for i := range m.Mounts {
		if err := m.Mounts[i].check(); err != nil {
			return fmt.Errorf("fs.mounts[%d]: %w", i, err)
		}
		if path.Clean(m.Mounts[i].Path) == "/" {
			return fmt.Errorf("fs.mounts[%d]: path \"/\" is the root, which fs.root mounts (by default the folder ppml runs in)", i)
		}
	}
	for _, uri := range m.AllowedFiles {
		if err := checkURI(uri); err != nil {
			return fmt.Errorf("sgx.allowed_files: %w", err)
		}
	}
	p, err := m.provisioning()
	if err != nil {
		return err
	}
	m.Provisioning = p
	return nil
}

// validJob reports whether name is a job's name: 1 to 64 letters, digits, '.', '_' or '-'.
func validJob(name string) bool {
	return len(name) >= 1 && len(name) <= 64 && strings.Trim(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == ""
}

// rootMount returns the mount of fs.root r, nil when the manifest has none: as in Gramine, the
// folder that the workload is started in (file:.).
func rootMount(r *root) (Mount, error) {
	if r == nil {
		return Mount{Type: Chroot, Path: "/", URI: "file:."}, nil
	}
	m := Mount{Type: r.Type, Path: "/", URI: r.URI, KeyName: r.KeyName}
	if err := m.check(); err != nil {
		return m, fmt.Errorf("fs.root: %w", err)
	}
	if m.Type == Encrypted {
		return m, errors.New("fs.root: ppml does not take an encrypted root: mount the encrypted folder in fs.mounts")
	}
	return m, nil
}

func (m *Mount) check() error {
	m.Type = cmp.Or(m.Type, Chroot)
	if !path.IsAbs(m.Path) {
		return fmt.Errorf("path %q is not an absolute path", m.Path)
	}
	switch m.Type {
	case Chroot, Encrypted:
		if err := checkURI(m.URI); err != nil {
			return err
		}
	case Tmpfs:
	case "untrusted_shm":
		return errors.New("ppml does not support untrusted_shm mounts")
	default:
		return fmt.Errorf("type %q is not chroot, encrypted or tmpfs", m.Type)
	}
	if m.Type == Encrypted {
		m.KeyName = cmp.Or(m.KeyName, "default")
	} else if m.KeyName != "" {
		return fmt.Errorf("key_name is only for encrypted mounts, and %s is %s", m.Path, m.Type)
	}
	return nil
}

// provisioning reads the SECRET_PROVISION_* variables, which must have values in the manifest.
func (m *Manifest) provisioning() (Provisioning, error) {
	p := Provisioning{Servers: []string{defaultServer}}
	value := func(name string) (string, bool, error) {
		v, ok := m.Env[name]
		if ok && v.Passthrough {
			return "", false, fmt.Errorf("loader.env.%s must have its value in the manifest, not passthrough", name)
		}
		return v.Value, ok, nil
	}
	servers, ok, err := value("SECRET_PROVISION_SERVERS")
	if err != nil {
		return p, err
	}
	if ok {
		p.Servers = nil
		for _, s := range strings.FieldsFunc(servers, func(r rune) bool { return r == ',' || r == ';' || r == ' ' }) {
			host, port, err := net.SplitHostPort(s)
			if n, perr := strconv.ParseUint(port, 10, 16); err != nil || perr != nil || host == "" || n == 0 {
				return p, fmt.Errorf("loader.env.SECRET_PROVISION_SERVERS: %q is not host:port", s)
			}
			p.Servers = append(p.Servers, s)
		}
		if len(p.Servers) == 0 {
			return p, errors.New("loader.env.SECRET_PROVISION_SERVERS names no server")
		}
	}
	if p.CAChainPath, _, err = value("SECRET_PROVISION_CA_CHAIN_PATH"); err != nil {
		return p, err
	}
	if p.SetKey, _, err = value("SECRET_PROVISION_SET_KEY"); err != nil {
		return p, err
	}
	if p.SetKey != "" && !slices.ContainsFunc(m.Mounts, func(mt Mount) bool { return mt.Type == Encrypted && mt.KeyName == p.SetKey }) {
		return p, fmt.Errorf("loader.env.SECRET_PROVISION_SET_KEY names key %q, which no encrypted mount uses", p.SetKey)
	}
	return p, nil
}

// Canonical returns the manifest's canonical form (see the package documentation).
func (m *Manifest) Canonical() []byte { return slices.Clone(m.canonical) }
