package provision

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/ppml/ppml/attest/trust"
)

// Config is the server's configuration file (TOML). Relative paths in it are relative to the
// file's folder.
type Config struct {
	Listen        string `toml:"listen"`
	TLSCert       string `toml:"tls_cert"`        // the server's own certificate (PEM)
	TLSKey        string `toml:"tls_key"`         // and its key
	Store         string `toml:"store"`           // "sqlite:PATH", "postgres://...", or "env:NAME" to read it from $NAME
	MasterKeyFile string `toml:"master_key_file"` // 32 bytes; keys are encrypted at rest under it
	// The roots of trust that vouch for workloads' evidence: sim_platforms, collateral,
	// skip_crl, tdx_collateral, snp, snp_certificates.
	trust.Settings

	MetricsListen string `toml:"metrics_listen"` // Prometheus metrics at /metrics; "" for none
	// MaxConnections are served at once; more wait to be accepted.
	MaxConnections int `toml:"max_connections"`
	// MaxConnectionsPerPeer are served at once from one IP address; more are closed at once.
	MaxConnectionsPerPeer int `toml:"max_connections_per_peer"`
	// FirstByteTimeout bounds the wait for a connection's first byte, HandshakeTimeout its TLS
	// handshake, RequestTimeout its request and the answer.
	FirstByteTimeout Duration `toml:"first_byte_timeout"`
	HandshakeTimeout Duration `toml:"handshake_timeout"`
	RequestTimeout   Duration `toml:"request_timeout"`
	// AuditCheckpointInterval is how often the server signs a checkpoint of the audit chain's
	// head, when records were added since its last; it signs one when it stops, too.
	AuditCheckpointInterval Duration `toml:"audit_checkpoint_interval"`
	// AuditCheckpointFile, if set, is a file to which the server appends each checkpoint it
	// signs (store.AppendCheckpoint): the chain's anchor outside the database, which belongs on
	// storage that the database's administrators cannot write, or shipped to the owner.
	AuditCheckpointFile string `toml:"audit_checkpoint_file"`
	// ExplainRefusals sends a refused client the reason (development only): by default it gets
	// the number of the audit record that holds the reason, and nothing of the policy.
	ExplainRefusals bool `toml:"explain_refusals"`

	Workloads Policy `toml:"workload"`
	// Jobs are the distributed jobs whose nodes join a mesh (job.go).
	Jobs []Job `toml:"job"`

	dir string
}

// Duration is a time.Duration written as in Go ("10s", "1m30s").
type Duration struct{ time.Duration }

// UnmarshalText parses a Go duration.
func (d *Duration) UnmarshalText(b []byte) error {
	var err error
	d.Duration, err = time.ParseDuration(string(b))
	return err
}

// Defaults for what a configuration leaves out.
const (
	defaultListen                = "127.0.0.1:4433"
	defaultMaxConnections        = 256
	defaultMaxConnectionsPerPeer = 32
	defaultFirstByteTimeout      = 2 * time.Second
	defaultHandshakeTimeout      = 10 * time.Second
	defaultRequestTimeout        = 10 * time.Second
	defaultCheckpointInterval    = time.Minute
)

// LoadConfig reads and checks a configuration file. Unknown keys are errors, so that a typo does
// not silently loosen the policy.
func LoadConfig(path string) (*Config, error) {
	c := &Config{dir: filepath.Dir(path)}
	md, err := toml.DecodeFile(path, c)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if undecoded := md.Undecoded(); len(undecoded) > 0 {
		var keys []string
		for _, k := range undecoded {
			keys = append(keys, k.String())
		}
		return nil, fmt.Errorf("%s: unknown keys: %s", path, strings.Join(keys, ", "))
	}
	if err := c.check(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

func (c *Config) check() error {
	if c.Listen == "" {
		c.Listen = defaultListen
	}
	for _, f := range []struct {
		name string
		v    *int
		def  int
	}{
		{"max_connections", &c.MaxConnections, defaultMaxConnections},
		{"max_connections_per_peer", &c.MaxConnectionsPerPeer, defaultMaxConnectionsPerPeer},
	} {
		if *f.v < 0 {
			return fmt.Errorf("%s must be positive (leave it out for %d)", f.name, f.def)
		}
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	for _, f := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"first_byte_timeout", &c.FirstByteTimeout.Duration, defaultFirstByteTimeout},
		{"handshake_timeout", &c.HandshakeTimeout.Duration, defaultHandshakeTimeout},
		{"request_timeout", &c.RequestTimeout.Duration, defaultRequestTimeout},
		{"audit_checkpoint_interval", &c.AuditCheckpointInterval.Duration, defaultCheckpointInterval},
	} {
		if *f.v < 0 {
			return fmt.Errorf("%s must be positive (leave it out for %v)", f.name, f.def)
		}
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	for _, f := range []struct{ name, v string }{{"tls_cert", c.TLSCert}, {"tls_key", c.TLSKey}, {"store", c.Store}, {"master_key_file", c.MasterKeyFile}} {
		if f.v == "" {
			return fmt.Errorf("%s is required", f.name)
		}
	}
	c.TLSCert, c.TLSKey, c.MasterKeyFile = c.Path(c.TLSCert), c.Path(c.TLSKey), c.Path(c.MasterKeyFile)
	if c.AuditCheckpointFile != "" {
		c.AuditCheckpointFile = c.Path(c.AuditCheckpointFile)
	}
	for _, where := range []*string{&c.Collateral, &c.TDXCollateral} {
		if *where != "" && !strings.Contains(*where, "://") {
			*where = c.Path(*where)
		}
	}
	if c.SNPCRL != "" {
		c.SNPCRL = c.Path(c.SNPCRL)
	}
	for i, p := range c.SNPCertificates {
		c.SNPCertificates[i] = c.Path(p)
	}
	for i, p := range c.SimPlatforms {
		c.SimPlatforms[i] = c.Path(p)
	}
	if name, ok := strings.CutPrefix(c.Store, "env:"); ok {
		// The store's URL, which may hold a password, kept out of the file (a Kubernetes Secret).
		if c.Store = os.Getenv(name); c.Store == "" {
			return fmt.Errorf("store = \"env:%s\": the environment variable %[1]s is not set or empty: set it to the store's data source name", name)
		}
	}
	if path, ok := strings.CutPrefix(c.Store, "sqlite:"); ok {
		c.Store = "sqlite:" + c.Path(path)
	}
	if len(c.Workloads) == 0 {
		return errors.New("no [[workload]]: the server would deny everything")
	}
	names := map[string]bool{}
	for i := range c.Workloads {
		w := &c.Workloads[i]
		if err := w.check(c.dir); err != nil {
			return err
		}
		if names[w.Name] {
			return fmt.Errorf("two workloads are named %q", w.Name)
		}
		names[w.Name] = true
	}
	return c.checkJobs()
}

// Path resolves a path of the configuration against the file's folder.
func (c *Config) Path(p string) string { return resolve(c.dir, p) }

func resolve(dir, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}
