package main

import (
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ppml/ppml/attest"
	"github.com/ppml/ppml/attest/gramine"
	"github.com/ppml/ppml/attest/rtmr"
	"github.com/ppml/ppml/attest/sim"
	simgpu "github.com/ppml/ppml/attest/sim/gpu"
	"github.com/ppml/ppml/attest/snp"
	"github.com/ppml/ppml/attest/tdx"
	"github.com/ppml/ppml/provision/client"
)

func newProvisionCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "provision",
		Short: "Ask a provisioning server for keys, attesting (for scripts and debugging)",
	}
	cmd.AddCommand(newFetchCommand())
	return cmd
}

func newFetchCommand() *cobra.Command {
	var servers, keys []string
	var caPath, out, tee, simDir, mrenclave, mrsigner string
	var enclave sim.Enclave
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "fetch --server HOST:PORT --ca CA.pem [--key NAME]... [-o FILE] --tee sim|gramine ...",
		Short: "Attest to a provisioning server and fetch keys",
		Long: `fetch attests with the chosen TEE, fetches keys from the first server that answers, and
writes them: one key to -o FILE as raw bytes, several to -o DIR as DIR/NAME, or to standard
output as "NAME HEX" lines. Without --key it asks with Gramine's protocol for the workload's
first key. A refusal exits 1 with the server's reason.

--tee gramine attests from inside a Gramine enclave (/dev/attestation); --tee tdx and --tee snp
from inside a confidential VM (configfs-tsm, or /dev/sev-guest), or as the simulated TDX or
SEV-SNP platform of --sim-platform. --tee sim attests with a simulated platform for the identity
given by --mrenclave, --mrsigner, --isv-prod-id, --isv-svn and --debug.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlags(cmd, "server", "ca", "tee"); err != nil {
				return err
			}
			a, err := attester(cmd, tee, simDir, func() (sim.Enclave, error) {
				for _, err := range []error{
					requireFlags(cmd, "mrenclave", "mrsigner"),
					hexFlag("mrenclave", mrenclave, enclave.MREnclave[:], false),
					hexFlag("mrsigner", mrsigner, enclave.MRSigner[:], false),
				} {
					if err != nil {
						return sim.Enclave{}, err
					}
				}
				return enclave, nil
			})
			if err != nil {
				return err
			}
			pem, err := os.ReadFile(caPath)
			if err != nil {
				return fmt.Errorf("--ca: %w", err)
			}
			roots := x509.NewCertPool()
			if !roots.AppendCertsFromPEM(pem) {
				return fmt.Errorf("--ca %s holds no PEM certificate", caPath)
			}
			c := &client.Client{Servers: servers, Roots: roots, Attester: a, Timeout: timeout}
			var secrets [][]byte
			names := keys
			if len(keys) == 0 {
				var s []byte
				s, err = c.FetchGramine(cmd.Context())
				secrets, names = [][]byte{s}, []string{"(first key)"}
			} else {
				secrets, err = c.Fetch(cmd.Context(), keys...)
			}
			if err != nil {
				return explainServerCertificate(err)
			}
			defer func() {
				for _, s := range secrets {
					clear(s)
				}
			}()
			return writeSecrets(cmd, out, names, secrets)
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&servers, "server", nil, "a server, HOST:PORT; repeat to try several in order")
	f.StringVar(&caPath, "ca", "", "the certificate authority of the servers' certificates (PEM)")
	f.StringSliceVar(&keys, "key", nil, "a key name; repeat for several")
	f.StringVarP(&out, "output", "o", "", "where to write the keys")
	f.StringVar(&tee, "tee", "", "how to attest: sim, gramine, tdx or snp")
	f.StringVar(&simDir, "sim-platform", "", "the simulated platform (--tee sim; or tdx, snp on a simulated one)")
	f.StringVar(&mrenclave, "mrenclave", "", "the claimed MRENCLAVE (--tee sim; 32 bytes, hex)")
	f.StringVar(&mrsigner, "mrsigner", "", "the claimed MRSIGNER (--tee sim; 32 bytes, hex)")
	f.Uint16Var(&enclave.ISVProdID, "isv-prod-id", 0, "the claimed ISV_PROD_ID (--tee sim)")
	f.Uint16Var(&enclave.ISVSVN, "isv-svn", 0, "the claimed ISV_SVN (--tee sim)")
	f.BoolVar(&enclave.Debug, "debug", false, "claim a debug enclave (--tee sim)")
	f.DurationVar(&timeout, "timeout", 30*time.Second, "per server, its tries together")
	return cmd
}

// underGramine is what --tee sgx is told.
const underGramine = "SGX workloads run under Gramine (gramine-sgx), with ppml serve as their provisioning server"

// attester returns the attester that --tee names. For --tee sim it attests, on the simulated
// platform of --sim-platform, as the enclave that simEnclave returns; --tee tdx and snp with
// --sim-platform attest as the simulated platform's trust domain or guest; without it, the
// error says what this machine lacks.
func attester(cmd *cobra.Command, tee, simDir string, simEnclave func() (sim.Enclave, error)) (attest.Attester, error) {
	if simDir != "" && (tee == "tdx" || tee == "snp") {
		a, err := simulatedVM(cmd, attest.Kind(tee), simDir)
		if err != nil {
			return nil, err
		}
		return withSimulatedGPUs(a, simDir)
	}
	switch tee {
	case "gramine":
		return gramine.Attester{}, nil
	case "sgx":
		return nil, usageError{fmt.Errorf("--tee sgx: %s; inside a Gramine enclave, fetch with --tee gramine", underGramine)}
	case "tdx":
		a, err := tdx.OpenAttester()
		if err != nil {
			return nil, fmt.Errorf("--tee tdx: no TDX attestation here: %w", err)
		}
		// Where Linux offers RTMR3 (6.16 and later), its event log goes with the quotes.
		if logged, ok := rtmr.Sysfs(a); ok {
			return logged, nil
		}
		return a, nil
	case "snp":
		a, err := snp.OpenAttester()
		if err != nil {
			return nil, fmt.Errorf("--tee snp: no SEV-SNP attestation here: %w", err)
		}
		return a, nil
	case "sim":
		if err := requireFlags(cmd, "sim-platform"); err != nil {
			return nil, err
		}
		e, err := simEnclave()
		if err != nil {
			return nil, err
		}
		p, err := sim.Load(simDir)
		if err != nil {
			return nil, err
		}
		if p.Settings.TEE == attest.TDX {
			return nil, usageError{fmt.Errorf("%s: --sim-platform %s is a simulated TDX platform: attest with --tee tdx", cmd.CommandPath(), simDir)}
		}
		return withSimulatedGPUs(sim.Attester{Platform: p, Enclave: e}, simDir)
	default:
		return nil, usageError{fmt.Errorf("--tee %q: want sim, gramine, tdx or snp", tee)}
	}
}

// withSimulatedGPUs returns a, attesting the simulated GPUs of the platform in dir beside the
// CPU when it has some.
func withSimulatedGPUs(a attest.Attester, dir string) (attest.Attester, error) {
	g, err := simgpu.Load(dir)
	if errors.Is(err, simgpu.ErrNoGPUs) {
		return a, nil
	}
	if err != nil {
		return nil, err
	}
	return attest.WithGPUs{Attester: a, GPUs: g}, nil
}

// simulatedVM returns the attester of the trust domain (tdx) or guest (snp) of the simulated
// platform in dir.
func simulatedVM(cmd *cobra.Command, tee attest.Kind, dir string) (attest.Attester, error) {
	if tee == attest.SNP {
		p, err := sim.LoadSNP(dir)
		if err != nil {
			return nil, err
		}
		return p.Attester(), nil
	}
	p, err := sim.Load(dir)
	if err != nil {
		return nil, err
	}
	if p.Settings.TEE != attest.TDX {
		return nil, usageError{fmt.Errorf("%s: --sim-platform %s is a simulated SGX platform: attest with --tee sim, or make a TDX one with ppml sim init --tee tdx", cmd.CommandPath(), dir)}
	}
	return p.TDAttester(), nil
}

func writeSecrets(cmd *cobra.Command, out string, names []string, secrets [][]byte) error {
	switch {
	case out == "":
		for i, s := range secrets {
			fmt.Fprintf(cmd.OutOrStdout(), "%s %x\n", names[i], s)
		}
		return nil
	case len(secrets) == 1:
		return os.WriteFile(out, secrets[0], 0o600)
	}
	if err := os.MkdirAll(out, 0o700); err != nil {
		return err
	}
	for i, s := range secrets {
		if err := os.WriteFile(filepath.Join(out, names[i]), s, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// explainServerCertificate adds to err, a failure to get keys from provisioning servers, what to
// do when a server's certificate is what failed: the CA given is not the server's, the server is
// reached by a name its certificate lacks (an IP address, typically), or the certificate expired.
func explainServerCertificate(err error) error {
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	switch {
	case errors.As(err, &unknown):
		return fmt.Errorf("%w (the server's certificate is not signed by the CA certificate given: give the ca.crt that ppml serve setup made in the server's folder)", err)
	case errors.As(err, &host):
		names := append([]string{}, host.Certificate.DNSNames...)
		for _, ip := range host.Certificate.IPAddresses {
			names = append(names, ip.String())
		}
		return fmt.Errorf("%w (the server's certificate is for %s: reach it by that name, or make its certificate for %s with ppml serve setup --host %s)", err, strings.Join(names, ", "), host.Host, host.Host)
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return fmt.Errorf("%w (the server's certificate has expired: make a new one with ppml serve setup)", err)
	}
	return err
}
