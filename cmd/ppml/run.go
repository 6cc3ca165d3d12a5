package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/ppml/ppml/attest"
	"github.com/ppml/ppml/attest/sim"
	"github.com/ppml/ppml/internal/harden"
	"github.com/ppml/ppml/manifest"
	"github.com/ppml/ppml/mesh"
	"github.com/ppml/ppml/sandbox"
)

func newRunCommand() *cobra.Command {
	var tee, simDir, meshEndpoint string
	var meshMTU int
	var verbose bool
	cmd := &cobra.Command{
		Use:   "run MANIFEST [-- ARGS...]",
		Short: "Run a workload confidentially, as its manifest describes",
		Long: `run fetches the keys of the encrypted mounts of MANIFEST from the provisioning servers that
it names, attesting with --tee, and runs libos.entrypoint in a view of the filesystem that holds
exactly the manifest's mounts: encrypted files are decrypted as the workload reads them, and
what it writes under an encrypted mount is encrypted; a plain mount holds its trusted files,
each checked when the workload first opens it and refused (Permission denied, and a log line)
if it changed, and, with sgx.file_check_policy = "allow_all_but_log", its other files unchecked
(docs/run.md, "Trusted files"). ppml exits with
the workload's exit status, 128+N when signal N killed it, and passes SIGINT, SIGTERM and SIGHUP
on to it. ARGS reach the workload only if the manifest sets loader.insecure__use_cmdline_argv.

The workload runs as loader.uid and loader.gid (65534, nobody, by default) with no capability,
no_new_privs and a seccomp filter, in a mount namespace whose root is its view, and inherits no
descriptor but its standard streams (docs/run.md, "The sandbox").

Relative paths in the manifest are relative to the current folder, and protected files are
bound to them as Gramine binds them: run ppml where gramine-sgx would run.

--tee tdx and --tee snp attest from inside a confidential VM, through configfs-tsm (or
/dev/sev-guest for SEV-SNP), or, with --sim-platform, as the trust domain or guest of a
simulated TDX or SEV-SNP platform (ppml sim init --tee tdx|snp). The evidence covers the VM's
image as measured when it started (TDX: MRTD and the RTMRs; SEV-SNP: the launch measurement)
and carries MANIFEST's measurement (ppml manifest measure) in the last 32 bytes of its report
data, which a policy may require (manifest = [...]); MANIFEST and ppml must still be part of
the measured image for that to mean anything (docs/cvm.md). Where the VM was launched with an
MRCONFIGID (TDX) or HOSTDATA (SEV-SNP) that is not zero, it must be MANIFEST's measurement
(ppml manifest measure --mrconfigid|--hostdata), or ppml stops before it fetches or mounts
anything. In a TD whose kernel offers RTMR3 (Linux 6.16 and later), and on a simulated TDX
platform, ppml then extends RTMR3 with MANIFEST's measurement, logs the event, and sends the log
with the evidence, for the server to replay (docs/cvm.md). The trusted files are checked against
MANIFEST all the same, when the workload opens them.

With ppml.gpus in MANIFEST, --tee tdx and snp (without --sim-platform) attest the VM's NVIDIA
GPUs beside the CPU, in confidential-computing mode, through NVML (a ppml built with -tags
nvml), and set them ready for work only once the keys were released (docs/gpu.md). A
simulated platform made with --gpus attests its simulated GPUs.

--tee sim attests with the simulated platform in --sim-platform, reporting the manifest's
measurement (ppml manifest measure) as MRENCLAVE and the signer of MANIFEST.sig, if there is
one, as MRSIGNER. It protects nothing: it is for development.

The workload's network is ppml.network's (docs/run.md, "Network"): by default ("none") a
network namespace of its own with loopback only; "host" leaves it on the host's network;
"mesh" gives it loopback and an encrypted WireGuard tunnel to the other nodes of the job that
ppml.job names, which ppml joins at the provisioning server after attesting: --mesh-endpoint
[ADDRESS]:PORT is where the other nodes reach this one (UDP; by default any free port, at the
address from which this node reaches the server). The mesh's MTU is that of the host's path to
the other nodes less WireGuard's 80 bytes (1420 on Ethernet's 1500, more on jumbo frames);
--mesh-mtu caps it, for a network whose path MTU is smaller than its interfaces'.

A manifest without encrypted mounts or mesh runs without attestation, as with gramine-direct. --verbose
reports the start-up's steps and their times on standard error and, when the workload ends,
the trusted files checked (those it opened, and those checked ahead of their opens from the
order of the last run) and the time checking them took.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 || cmd.ArgsLenAtDash() == 0 {
				return usageError{fmt.Errorf("%s: name the manifest to run", cmd.CommandPath())}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if tee == "sgx" || tee == "gramine" {
				return usageError{fmt.Errorf("%s: --tee %s: %s; ppml run attests with tdx, snp or sim", cmd.CommandPath(), tee, underGramine)}
			}
			if !slices.Contains([]string{"", "sim", "tdx", "snp"}, tee) {
				return usageError{fmt.Errorf("%s: --tee %q: want tdx, snp or sim", cmd.CommandPath(), tee)}
			}
			if tee == "" && cmd.Flags().Changed("sim-platform") {
				return usageError{fmt.Errorf("%s: --sim-platform goes with --tee sim, tdx or snp", cmd.CommandPath())}
			}
			m, err := manifest.ParseFile(args[0])
			if err != nil {
				return err
			}
			endpoint, err := parseMeshEndpoint(meshEndpoint)
			if err != nil {
				return usageError{fmt.Errorf("%s: %w", cmd.CommandPath(), err)}
			}
			for _, flag := range []string{"mesh-endpoint", "mesh-mtu"} {
				if cmd.Flags().Changed(flag) && m.Network != manifest.NetworkMesh {
					return usageError{fmt.Errorf("%s: --%s is for ppml.network = %q, and %s has %q", cmd.CommandPath(), flag, manifest.NetworkMesh, args[0], m.Network)}
				}
			}
			if meshMTU != 0 && (meshMTU < mesh.MinMTU || meshMTU > mesh.MaxMTU) {
				return usageError{fmt.Errorf("%s: --mesh-mtu %d: want %d to %d, or 0 for the path's", cmd.CommandPath(), meshMTU, mesh.MinMTU, mesh.MaxMTU)}
			}
			var a attest.Attester
			var gpus sandbox.ConfidentialGPUs
			if len(sandbox.KeyNames(m)) > 0 || m.Network == manifest.NetworkMesh {
				if a, err = runAttester(cmd, args[0], m, tee, simDir); err != nil {
					return err
				}
				g, err := nvmlGPUs(m, tee, simDir)
				if err != nil {
					return err
				}
				if g != nil {
					defer g.Close()
					a, gpus = attest.WithGPUs{Attester: a, GPUs: g}, g
				}
			}
			// This process holds the keys until the sandbox process does.
			if err := harden.Process(); err != nil {
				return err
			}
			level := slog.LevelWarn
			if verbose {
				level = slog.LevelInfo
			}
			signals := make(chan os.Signal, 1)
			signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
			defer signal.Stop(signals)
			// sandbox.Run passes the signals on, until the command ends: not restored, so that
			// a signal still on its way when the workload ends does not turn its status into
			// ppml's 128+N.
			stopBy(cmd.Context(), forwardSignals)
			// The workload, told of the signals, decides when it stops: the first one, which
			// cancels the command's context, must not kill it.
			res, err := sandbox.Run(context.WithoutCancel(cmd.Context()), m, sandbox.Options{
				Args:             args[1:],
				Attester:         a,
				ConfidentialGPUs: gpus,
				Stdin:            cmd.InOrStdin(),
				Stdout:           cmd.OutOrStdout(),
				Stderr:           cmd.ErrOrStderr(),
				Signals:          signals,
				MeshEndpoint:     endpoint,
				MeshMTU:          meshMTU,
				Log:              slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level})),
				CheckAhead:       checkAheadDir(),
			})
			if err != nil {
				return fromManifestFolder(explainServerCertificate(err), args[0], m)
			}
			if res.ExitCode != 0 {
				return exitStatus{res.ExitCode}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&tee, "tee", "", "how to attest for the keys of encrypted mounts: tdx or snp (in a confidential VM), or sim")
	f.StringVar(&simDir, "sim-platform", "", "the simulated platform's folder (--tee sim; tdx, snp on a simulated platform)")
	f.StringVar(&meshEndpoint, "mesh-endpoint", "", "[ADDRESS]:PORT where the job's other nodes send this node's WireGuard packets (ppml.network = \"mesh\")")
	f.IntVar(&meshMTU, "mesh-mtu", 0, "cap the MTU of the mesh's interface (ppml.network = \"mesh\"); by default the host's path MTU to the other nodes less 80")
	f.BoolVarP(&verbose, "verbose", "v", false, "report the start-up's steps and times")
	return cmd
}

// checkAheadDir is where ppml run keeps the order in which each manifest's workload opened its
// trusted files (docs/run.md, "Trusted files"): ppml/check-ahead in the user's cache folder;
// "" where there is none, or the folder that holds it ($HOME) does not exist, which ppml does
// not make.
func checkAheadDir() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	if _, err := os.Stat(filepath.Dir(dir)); err != nil {
		return ""
	}
	return filepath.Join(dir, "ppml", "check-ahead")
}

// parseMeshEndpoint parses --mesh-endpoint: [ADDRESS]:PORT, or "" for any port at the address
// that the provisioning server sees.
func parseMeshEndpoint(s string) (netip.AddrPort, error) {
	if s == "" {
		return netip.AddrPort{}, nil
	}
	host, port, err := net.SplitHostPort(s)
	var p uint64
	if err == nil {
		p, err = strconv.ParseUint(port, 10, 16)
	}
	var a netip.Addr
	if err == nil && host != "" {
		a, err = netip.ParseAddr(host)
	}
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("--mesh-endpoint %q is not [ADDRESS]:PORT with an IP address: %w", s, err)
	}
	return netip.AddrPortFrom(a, uint16(p)), nil
}

// runAttester returns the attester with which the workload of m, read from the file name,
// attests for its keys with the TEE that --tee names. On the simulated platform it reports the
// manifest's measurement and the signer of its signature, if it has one.
func runAttester(cmd *cobra.Command, name string, m *manifest.Manifest, tee, simDir string) (attest.Attester, error) {
	if tee == "" {
		return nil, usageError{fmt.Errorf("%s: %s has encrypted mounts or ppml.network = \"mesh\", which need attestation: choose how with --tee tdx, snp or sim", cmd.CommandPath(), name)}
	}
	if err := m.CheckHashed(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return attester(cmd, tee, simDir, func() (sim.Enclave, error) {
		sig, err := readManifestSignature(manifest.SignaturePath(name), m)
		if err != nil {
			return sim.Enclave{}, err
		}
		return sim.WorkloadEnclave(m, sig), nil
	})
}

// fromManifestFolder adds where to run ppml to err, an error about a missing file, when a relative
// URI of m, read from the file name, that does not resolve from the current folder does from the
// manifest's: ppml was run from another folder than the one the manifest was made for.
func fromManifestFolder(err error, name string, m *manifest.Manifest) error {
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	var uris []string
	for _, tf := range m.TrustedFiles {
		uris = append(uris, tf.Path())
	}
	for _, mt := range m.Mounts {
		if mt.Type != manifest.Tmpfs {
			uris = append(uris, mt.HostPath())
		}
	}
	for _, uri := range m.AllowedFiles {
		uris = append(uris, strings.TrimPrefix(uri, "file:"))
	}
	dir := filepath.Dir(name)
	for _, p := range uris {
		if p == "" || filepath.IsAbs(p) {
			continue
		}
		if _, here := os.Stat(p); !errors.Is(here, fs.ErrNotExist) {
			continue
		}
		if _, there := os.Stat(filepath.Join(dir, p)); there == nil {
			return fmt.Errorf("%w (relative URIs are resolved from the current folder; run ppml in %s)", err, dir)
		}
	}
	return err
}
