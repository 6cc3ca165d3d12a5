package main

import (
	"cmp"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/ppml/ppml/attest"
	"github.com/ppml/ppml/internal/atomicfile"
	"github.com/ppml/ppml/internal/harden"
	"github.com/ppml/ppml/manifest"
	"github.com/ppml/ppml/provision"
	"github.com/ppml/ppml/sandbox"
	"github.com/ppml/ppml/store"
)

func newServeCommand() *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use:   "serve --config FILE",
		Short: "Run the secret provisioning server",
		Long: `serve runs the data owner's secret provisioning server: it releases keys only to workloads
whose attestation evidence verifies and whose claims the configuration's policy admits, and it
writes every decision to the audit log. It speaks Gramine's protocol, so that unmodified Gramine
enclaves get their key, and ppml's extension for named keys. SIGHUP reloads the configuration.
SIGINT and SIGTERM stop the server: it stops accepting connections and waits for those in
progress, for 30 seconds at most, then closes them; a second SIGINT or SIGTERM stops it at once.

See docs/provisioning.md for the configuration; "ppml serve setup" makes a certificate
authority, a server certificate and a master key.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlags(cmd, "config"); err != nil {
				return err
			}
			return serve(cmd, configPath)
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "the server configuration (TOML)")
	cmd.AddCommand(newServeSetupCommand(), newServeAddWorkloadCommand())
	return cmd
}

func serve(cmd *cobra.Command, configPath string) error {
	log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
	cfg, err := provision.LoadConfig(configPath)
	if err != nil {
		return err
	}
	// The master key and the keys it releases stay in RAM and out of core dumps; a server that
	// may not lock its memory (not root, a small RLIMIT_MEMLOCK) still runs, and says so.
	if err := harden.Process(); err != nil {
		log.Warn("the keys may reach swap", "err", err)
	}
	st, err := openStore(cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	server, err := provision.NewServer(cfg, st, log, provision.NewMetrics(reg))
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	if cfg.MetricsListen != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		mux.HandleFunc("GET "+provision.HealthzPath, provision.Healthz)
		mux.HandleFunc("GET "+provision.ReadyzPath, server.Readyz)
		metrics := &http.Server{Addr: cfg.MetricsListen, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := metrics.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics server", "err", err)
			}
		}()
		defer metrics.Close()
	}

	defer reloadOnHangup(cmd.Context(), configPath, server, log)()
	log.Info("serving", "listen", ln.Addr().String(), "workloads", len(cfg.Workloads), "sim_platforms", len(cfg.SimPlatforms))
	return serveUntilStopped(cmd.Context(), server, ln, log)
}

// serveUntilStopped serves on ln until ctx ends, then stops the server: it waits for the
// connections in progress, for shutdownTimeout at most, and closes those left. A second signal
// while it waits ends ppml (stopOnContext).
func serveUntilStopped(ctx context.Context, server *provision.Server, ln net.Listener, log *slog.Logger) error {
	defer stopBy(ctx, stopOnContext)()
	served := make(chan error, 1)
	go func() { served <- server.Serve(ln) }()
	select {
	case err := <-served:
		// The listener failed: the connections in progress still finish, and are audited,
		// before the store closes.
		shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
		defer cancel()
		server.Shutdown(shutdown)
		return fmt.Errorf("accept connections: %w", err)
	case <-ctx.Done():
	}
	log.Info("stopping: waiting for the connections in progress (interrupt again to stop at once)", "timeout", shutdownTimeout)
	shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	err := server.Shutdown(shutdown)
	if err := <-served; err != nil { // at once, since Shutdown was called
		return err
	}
	if err != nil {
		return fmt.Errorf("stopped: the connections in progress did not end within %v, and were closed (%w)", shutdownTimeout, err)
	}
	log.Info("stopped")
	return nil
}

// shutdownTimeout is how long serve, once stopping, waits for the connections in progress.
const shutdownTimeout = 30 * time.Second

// reloadOnHangup reloads the server's configuration from configPath on every SIGHUP, until ctx
// ends or the function returned is called.
func reloadOnHangup(ctx context.Context, configPath string, server *provision.Server, log *slog.Logger) (stop func()) {
	hangups := make(chan os.Signal, 1)
	signal.Notify(hangups, syscall.SIGHUP)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hangups:
			}
			cfg, err := provision.LoadConfig(configPath)
			if err == nil {
				err = server.Reload(cfg)
			}
			if err != nil {
				log.Error("configuration not reloaded", "err", err)
				continue
			}
			log.Info("configuration reloaded", "workloads", len(cfg.Workloads))
		}
	}()
	return func() {
		cancel()
		<-done
		signal.Stop(hangups)
	}
}

// withConfigStore makes a command that runs f with the store of the server configuration that
// *configPath names.
func withConfigStore(configPath *string, f func(*cobra.Command, store.Store, []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		if err := requireFlags(cmd, "config"); err != nil {
			return err
		}
		cfg, err := provision.LoadConfig(*configPath)
		if err != nil {
			return err
		}
		st, err := openStore(cfg)
		if err != nil {
			return err
		}
		defer st.Close()
		return f(cmd, st, args)
	}
}

func openStore(cfg *provision.Config) (store.Store, error) {
	mk, err := store.ReadMasterKey(cfg.MasterKeyFile)
	if err != nil {
		return nil, err
	}
	defer clear(mk)
	return store.Open(cfg.Store, mk)
}

func newServeSetupCommand() *cobra.Command {
	var hosts, simPlatforms []string
	var listen string
	cmd := &cobra.Command{
		Use:   "setup DIR [--host NAME]... [--listen ADDR] [--sim-platform DIR]...",
		Short: "Make a CA, a server certificate, a master key and a configuration for a new server",
		Long: `setup writes into DIR (made if missing) a certificate authority (ca.crt, and ca.key to keep
offline), a server certificate it signs for the hosts named (server.crt, server.key), a master
key (master.key) and a configuration (server.toml) that uses them, listens on --listen and
trusts the simulated platforms of --sim-platform. Workloads trust ca.crt; Gramine's client
checks the server's name against the host part of SECRET_PROVISION_SERVERS. Add workloads with
ppml serve add-workload. Nothing is replaced.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			if _, err := os.Stat(filepath.Join(dir, provision.SetupConfig)); err == nil {
				return fmt.Errorf("%s already exists: not replacing it", filepath.Join(dir, provision.SetupConfig))
			}
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return err
			}
			sims := make([]string, len(simPlatforms))
			for i, p := range simPlatforms {
				rel, err := relativeTo(dir, p)
				if err != nil {
					return err
				}
				sims[i] = rel
			}
			if err := provision.Setup(dir, hosts, time.Now()); err != nil {
				return err
			}
			if err := provision.WriteConfig(dir, listen, sims); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: ca.crt, ca.key, server.crt, server.key (for %s), master.key, %s\n", dir, strings.Join(hosts, ", "), provision.SetupConfig)
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&hosts, "host", []string{"localhost"}, "a name or address the server is reached by")
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:4433", "the address the server listens on")
	cmd.Flags().StringSliceVar(&simPlatforms, "sim-platform", nil, "a simulated platform to trust (development only)")
	return cmd
}

// relativeTo returns the path p, given relative to the current folder, relative to dir.
func relativeTo(dir, p string) (string, error) {
	absDir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	absP, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	return filepath.Rel(absDir, absP)
}

func newServeAddWorkloadCommand() *cobra.Command {
	var configPath, name, tee, sigFile string
	var keys []string
	var allowDebug bool
	cmd := &cobra.Command{
		Use:   "add-workload MANIFEST --config FILE --tee sim|sgx [--sig FILE] [--name NAME] [--key NAME]...",
		Short: "Admit the workload of a manifest: its measurement, TEE and keys, into the server's policy",
		Long: `add-workload adds a [[workload]] to the server's configuration that admits the workload of
MANIFEST and gives it the keys of its encrypted mounts (or those of --key):

  --tee sim   the manifest's measurement (ppml manifest measure) on the server's simulated
              platforms: development only;
  --tee sgx   the workload signed by gramine-sgx-sign, whose .sig file --sig names (its
              MRENCLAVE, MRSIGNER, ISV_PROD_ID and ISV_SVN).

A TDX or SEV-SNP workload is admitted by its VM's measurement (mrtd, measurement), which the
manifest does not give: write its [[workload]] by hand (docs/provisioning.md). The name is the
manifest's file name without its extension unless --name says otherwise. The configuration is
replaced only if the result is valid; a running server takes it on SIGHUP.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireFlags(cmd, "config", "tee"); err != nil {
				return err
			}
			m, err := manifest.ParseFile(args[0])
			if err != nil {
				return err
			}
			w := provision.Workload{Name: name, TEE: "sgx", Keys: keys, AllowDebug: allowDebug}
			if w.Name == "" {
				w.Name = strings.TrimSuffix(filepath.Base(args[0]), filepath.Ext(args[0]))
			}
			if len(w.Keys) == 0 {
				w.Keys = sandbox.KeyNames(m)
			}
			if len(w.Keys) == 0 {
				return usageError{fmt.Errorf("%s: %s has no encrypted mounts: name the keys it may have with --key", cmd.CommandPath(), args[0])}
			}
			switch {
			case tee == "sim" && sigFile == "":
				if err := m.CheckHashed(); err != nil {
					return fmt.Errorf("%s: %w", args[0], err)
				}
				mrenclave := manifest.Measure(m)
				w.MREnclave, w.AllowSimulated = []string{hex.EncodeToString(mrenclave[:])}, true
			case tee == "sgx" && sigFile != "":
				if w.SigFile, err = relativeTo(filepath.Dir(configPath), sigFile); err != nil {
					return err
				}
			case tee == "sgx":
				return usageError{fmt.Errorf("%s: --tee sgx needs --sig, the .sig file gramine-sgx-sign wrote for the manifest", cmd.CommandPath())}
			case tee == "tdx" || tee == "snp":
				return usageError{fmt.Errorf("%s: a %s workload is admitted by its VM's measurement, which the manifest does not give: write its [[workload]] by hand (docs/provisioning.md)", cmd.CommandPath(), strings.ToUpper(tee))}
			default:
				return usageError{fmt.Errorf("%s: --tee %q: want sim, or sgx with --sig", cmd.CommandPath(), tee)}
			}
			if err := provision.AddWorkload(configPath, w); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "added workload %q to %s: keys %s\n", w.Name, configPath, strings.Join(w.Keys, ", "))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&configPath, "config", "", "the server configuration (TOML)")
	f.StringVar(&tee, "tee", "", "sim (the manifest's measurement, simulated platforms) or sgx (with --sig)")
	f.StringVar(&sigFile, "sig", "", "the .sig file of gramine-sgx-sign (--tee sgx)")
	f.StringVar(&name, "name", "", "the workload's name (default: the manifest's file name)")
	f.StringSliceVar(&keys, "key", nil, "a key it may have (default: its encrypted mounts' keys)")
	f.BoolVar(&allowDebug, "allow-debug", false, "admit it as a debug enclave too (development only)")
	return cmd
}

func newKeyCommand() *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use:   "key",
		Short: "Manage the server's keys (never printing them)",
	}
	cmd.PersistentFlags().StringVar(&configPath, "config", "", "the server configuration (TOML)")
	withStore := func(f func(*cobra.Command, store.Store, []string) error) func(*cobra.Command, []string) error {
		return withConfigStore(&configPath, f)
	}
	report := func(cmd *cobra.Command, verb string, k store.KeyInfo) {
		fmt.Fprintf(cmd.OutOrStdout(), "key %q %s (version %d)\n", k.Name, verb, k.Version)
	}
	var keyFile string
	importCmd := &cobra.Command{
		Use:   "import NAME -w KEYFILE --config FILE",
		Short: "Store a 16-byte wrap key (as ppml pf gen-key writes it) under NAME",
		Args:  exactArgs(1),
		RunE: withStore(func(cmd *cobra.Command, st store.Store, args []string) error {
			if err := requireFlags(cmd, "wrap-key"); err != nil {
				return err
			}
			key, err := readKey(keyFile)
			if err != nil {
				return err
			}
			defer clear(key[:])
			k, err := st.ImportKey(cmd.Context(), args[0], key[:])
			if err == nil {
				report(cmd, "imported", k)
			}
			return err
		}),
	}
	importCmd.Flags().StringVarP(&keyFile, "wrap-key", "w", "", "the key file")
	var version int
	var force bool
	exportCmd := &cobra.Command{
		Use:   "export NAME -w KEYFILE [--version N] --config FILE",
		Short: "Write a version of NAME (by default the current one) to a key file, for ppml pf rekey",
		Long: `export writes version N of the key NAME, or its current version, to KEYFILE (16 raw bytes, mode
0600), as ppml pf gen-key writes a key: after ppml key rotate, export the version before and the
current one, re-encrypt the files with ppml pf rekey -w OLD -W NEW, then remove both files.
Workloads always get the current version.`,
		Args: exactArgs(1),
		RunE: withStore(func(cmd *cobra.Command, st store.Store, args []string) error {
			if err := requireFlags(cmd, "wrap-key"); err != nil {
				return err
			}
			name := args[0]
			if version < 0 {
				return usageError{fmt.Errorf("%s: --version %d: versions start at 1", cmd.CommandPath(), version)}
			}
			key, version, err := st.Key(cmd.Context(), name, version)
			if err != nil {
				return err
			}
			defer clear(key)
			if err := atomicfile.WriteFile(keyFile, key, 0o600, force); err != nil {
				return forceHint(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "key %q version %d written to %s\n", name, version, keyFile)
			return nil
		}),
	}
	exportCmd.Flags().StringVarP(&keyFile, "wrap-key", "w", "", "the key file to write")
	exportCmd.Flags().IntVar(&version, "version", store.Current, "the version to write (default: the current one)")
	exportCmd.Flags().BoolVar(&force, "force", false, "replace an existing key file")
	one := func(use, short, verb string, f func(context.Context, store.Store, string) (store.KeyInfo, error)) *cobra.Command {
		return &cobra.Command{
			Use: use, Short: short, Args: exactArgs(1),
			RunE: withStore(func(cmd *cobra.Command, st store.Store, args []string) error {
				k, err := f(cmd.Context(), st, args[0])
				if err == nil {
					report(cmd, verb, k)
				}
				return err
			}),
		}
	}
	var asJSON bool
	listCmd := &cobra.Command{
		Use: "list --config FILE [--json]", Short: "List the keys: names, versions, dates", Args: exactArgs(0),
		RunE: withStore(func(cmd *cobra.Command, st store.Store, _ []string) error {
			keys, err := st.ListKeys(cmd.Context())
			for _, k := range keys {
				if asJSON {
					b, _ := json.Marshal(k)
					fmt.Fprintln(cmd.OutOrStdout(), string(b))
					continue
				}
				rotated := "never rotated"
				if !k.Rotated.IsZero() {
					rotated = "rotated " + k.Rotated.Format(time.RFC3339)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%-24s version %d, created %s, %s\n", k.Name, k.Version, k.Created.Format(time.RFC3339), rotated)
			}
			return err
		}),
	}
	listCmd.Flags().BoolVar(&asJSON, "json", false, "one JSON object per line")
	cmd.AddCommand(importCmd, exportCmd,
		one("create NAME --config FILE", "Store a new random key under NAME", "created",
			func(ctx context.Context, st store.Store, name string) (store.KeyInfo, error) {
				return st.CreateKey(ctx, name)
			}),
		one("rotate NAME --config FILE", "Make a new random current version of NAME (old versions are kept)", "rotated",
			func(ctx context.Context, st store.Store, name string) (store.KeyInfo, error) {
				return st.RotateKey(ctx, name)
			}),
		&cobra.Command{
			Use: "delete NAME --config FILE", Short: "Delete every version of NAME", Args: exactArgs(1),
			RunE: withStore(func(cmd *cobra.Command, st store.Store, args []string) error {
				if err := st.DeleteKey(cmd.Context(), args[0]); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "key %q deleted\n", args[0])
				return nil
			}),
		},
		listCmd,
	)
	return cmd
}

func newAuditCommand() *cobra.Command {
	var configPath, ref string
	var asJSON bool
	var tail int
	cmd := &cobra.Command{
		Use:   "audit --config FILE [--json] [--tail N] [--ref REF]",
		Short: "Print the server's audit log, one decision per line",
		Long: `audit prints the server's audit log, one decision per line, oldest first, and each change of a
key that ppml key made (key-create, key-import, key-rotate, key-delete, with the version it
made). A refused client is told the reference of its record, not its number: --ref prints that
record alone.`,
		Args: exactArgs(0),
		RunE: withConfigStore(&configPath, func(cmd *cobra.Command, st store.Store, _ []string) error {
			out := cmd.OutOrStdout()
			found := false
			for r, err := range st.AuditRecords(cmd.Context(), store.AuditFilter{Limit: tail, Tail: tail > 0}) {
				if err != nil {
					return err
				}
				if ref != "" && st.AuditRef(r.ID) != ref {
					continue
				}
				found = true
				if asJSON {
					b, _ := json.Marshal(struct {
						store.AuditRecord
						Ref string `json:"ref"`
					}{r, st.AuditRef(r.ID)})
					fmt.Fprintln(out, string(b))
					continue
				}
				if r.Decision.KeyChange() { // ppml key's, with no peer nor evidence
					fmt.Fprintf(out, "%s %s key=%s version=%d\n", r.Time.Format(time.RFC3339), r.Decision, strings.Join(r.Keys, ","), r.KeyVersion)
					continue
				}
				what := "keys " + strings.Join(r.Keys, ",")
				if r.Decision == store.Deny {
					what = "reason: " + r.Reason
				} else if len(r.Keys) == 0 && r.Reason != "" {
					what = r.Reason // a mesh join (docs/distributed.md)
				}
				id := r.MREnclave
				if id == "" {
					id = r.MRTD + r.Measurement
				}
				tee, workload := r.TEE, r.Workload
				if r.Platform == string(attest.Simulated) {
					tee += " (simulated)"
				}
				if workload == "" {
					workload = "-" // no workload admitted the evidence
				}
				if r.Manifest != "" {
					workload += " manifest=" + short(r.Manifest)
				}
				fmt.Fprintf(out, "%s %-5s %s %s %s%s workload=%s %s\n", r.Time.Format(time.RFC3339), r.Decision, r.Peer, tee, short(id), tcbFields(&r), workload, what)
			}
			if ref != "" && !found {
				return fmt.Errorf("no audit record has the reference %s (a refused client gives the one it was told)", ref)
			}
			return nil
		}),
	}
	cmd.Flags().StringVar(&configPath, "config", "", "the server configuration (TOML)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "one JSON object per line, with the record's chain hashes")
	cmd.Flags().IntVar(&tail, "tail", 0, "only the last N records")
	cmd.Flags().StringVar(&ref, "ref", "", "only the record of this reference, as a refused client was told it")
	cmd.AddCommand(newAuditVerifyCommand())
	return cmd
}

func newAuditVerifyCommand() *cobra.Command {
	var configPath, checkpointFile string
	var certs []string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "verify --config FILE [--cert FILE]... [--checkpoints FILE] [--json]",
		Short: "Check that no audit record was changed, deleted or inserted since it was written",
		Long: `verify checks the whole audit log: each record against the hash it carries and the hash of
the record before it, and each checkpoint that the servers signed against its signer's
certificate and the record it covers. It names the first record that does not fit. Checkpoints
are signed with the servers' TLS keys: the configuration's tls_cert, and, after the key was
changed, the earlier certificates that --cert names. Whoever can write the database can delete
checkpoints, and rewrite the records after the oldest one left: --checkpoints (by default the
configuration's audit_checkpoint_file) names the file to which the server appended each
checkpoint, and every checkpoint there must be in the database and covered by the chain. Last,
each key must be at the version that the checkpoints sign and the records of ppml key's changes
name, or a later one: a key rolled back in the database (its current version set back, newer
versions deleted, a deleted key restored) is named. See docs/provisioning.md#audit.`,
		Args: exactArgs(0),
		RunE: withConfigStore(&configPath, func(cmd *cobra.Command, st store.Store, _ []string) error {
			cfg, err := provision.LoadConfig(configPath)
			if err != nil {
				return err
			}
			var keys []crypto.PublicKey
			for _, path := range append([]string{cfg.TLSCert}, certs...) {
				cert, err := readCertificate(path)
				if err != nil {
					return err
				}
				keys = append(keys, cert.PublicKey)
			}
			var anchored []store.Checkpoint
			given := checkpointFile != ""
			if checkpointFile = cmp.Or(checkpointFile, cfg.AuditCheckpointFile); checkpointFile != "" {
				if anchored, err = store.ReadCheckpointFile(checkpointFile, given); err != nil {
					return err
				}
			}
			rep, err := store.VerifyAudit(cmd.Context(), st, keys, anchored)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				b, _ := json.Marshal(rep)
				fmt.Fprintln(out, string(b))
				return nil
			}
			fmt.Fprintf(out, "audit log verified: %d records, %d checkpoints\n", rep.Records, rep.Checkpoints)
			if rep.Unchained > 0 {
				fmt.Fprintf(out, "%d records from before the chain (up to record %d) are not protected\n", rep.Unchained, rep.Unchained)
			}
			if rep.Covered > 0 {
				fmt.Fprintf(out, "records up to %d are signed; the last checkpoint was made %s\n", rep.Covered, rep.LastSigned.Format(time.RFC3339))
			}
			if rep.Unsigned > 0 {
				fmt.Fprintf(out, "the last %d records are chained but no checkpoint signs them yet\n", rep.Unsigned)
			}
			if checkpointFile != "" {
				fmt.Fprintf(out, "the %d checkpoints of %s are all in the database\n", rep.Anchored, checkpointFile)
			} else {
				fmt.Fprintln(out, "no checkpoint file (audit_checkpoint_file, --checkpoints): checkpoints deleted from the database, with the records after the oldest one left, would not be seen")
			}
			if rep.Keys > 0 {
				fmt.Fprintf(out, "%d keys are at the versions that the checkpoints and key changes say, or later: none was rolled back\n", rep.Keys)
			}
			return nil
		}),
	}
	cmd.Flags().StringVar(&configPath, "config", "", "the server configuration (TOML)")
	cmd.Flags().StringSliceVar(&certs, "cert", nil, "an earlier server certificate whose key signed checkpoints")
	cmd.Flags().StringVar(&checkpointFile, "checkpoints", "", "the checkpoint file the server appended to (default: audit_checkpoint_file)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "the summary as JSON")
	return cmd
}

// readCertificate reads a PEM certificate file.
func readCertificate(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: not a PEM certificate", path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cert, nil
}

// tcbFields are the TCB status of an audit record and what it rests on, for a one-line display:
// " tcb=STATUS tcb_date=... tcb_eval=... qe=... tdx_module=ID/SVN/STATUS advisories=A,B", each
// where the record has it; "" for a record without a TCB status.
func tcbFields(r *store.AuditRecord) string {
	if r.TCBStatus == "" {
		return ""
	}
	s := " tcb=" + r.TCBStatus
	if r.TCBDate != nil {
		s += " tcb_date=" + r.TCBDate.Format(time.DateOnly)
	}
	if r.TCBEvaluationDataNumber != 0 {
		s += fmt.Sprintf(" tcb_eval=%d", r.TCBEvaluationDataNumber)
	}
	if r.QEStatus != "" {
		s += " qe=" + r.QEStatus
	}
	if m := r.TDXModule; m != nil {
		s += fmt.Sprintf(" tdx_module=%s/%d/%s", m.ID, m.ISVSVN, m.Status)
	}
	if len(r.AdvisoryIDs) > 0 {
		s += " advisories=" + strings.Join(r.AdvisoryIDs, ",")
	}
	return s
}

// short abbreviates a measurement for a one-line display.
func short(hexID string) string {
	if len(hexID) > 16 {
		return hexID[:16] + "…"
	}
	if hexID == "" {
		return "-"
	}
	return hexID
}
