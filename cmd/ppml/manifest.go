package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ppml/ppml/attest/cvm"
	"github.com/ppml/ppml/internal/atomicfile"
	"github.com/ppml/ppml/manifest"
)

func newManifestCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "manifest",
		Short: "Render, measure and sign workload manifests",
		Long: `A manifest says what a workload is: its executable, arguments and environment, the files it
sees (fs.mounts, some of them encrypted) and the hashes of the files it trusts. ppml reads
Gramine's manifests and renders Gramine's manifest templates.

The measurement of a manifest is the SHA-256 of its canonical form, which holds the hash of
every trusted file: the simulated platform reports it as MRENCLAVE, and a provisioning
server's policy names it. The signer's key gives MRSIGNER.`,
	}
	cmd.AddCommand(newManifestRenderCommand(), newManifestMeasureCommand(), newManifestSignCommand(), newManifestGenKeyCommand())
	return cmd
}

func newManifestRenderCommand() *cobra.Command {
	var defines []string
	var out string
	var force bool
	cmd := &cobra.Command{
		Use:   "render TEMPLATE [-D NAME=VALUE]... [-o MANIFEST]",
		Short: "Fill a manifest template and hash its trusted files, as gramine-manifest does",
		Long: `render fills TEMPLATE, a gramine-manifest (Jinja) template, with the -D definitions
("-D NAME" alone defines NAME as True), checks the manifest, hashes its trusted files (folders
recursively) and writes it in canonical form to MANIFEST, or to standard output without -o (or
with -o -): the SHA-256 of MANIFEST is its measurement. Relative trusted-file paths are relative
to the current folder, as for gramine-manifest.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			vars := map[string]string{}
			for _, d := range defines {
				name, value, ok := strings.Cut(d, "=")
				if !ok {
					value = "True"
				}
				vars[name] = value
			}
			template, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			finish := func() {}
			b, err := manifest.Render(template, vars, &manifest.RenderOptions{Progress: func(total int64) io.Writer {
				var bar io.Writer
				bar, finish = newProgress(cmd.ErrOrStderr(), total, "hashing the trusted files")
				return bar
			}})
			finish()
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			m, err := manifest.Parse(b)
			if err != nil {
				return err
			}
			if out == "" || out == "-" {
				_, err := cmd.OutOrStdout().Write(b)
				return err
			}
			if err := atomicfile.WriteFile(out, b, 0o644, force); err != nil {
				return forceHint(err)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "manifest written to %s (%d trusted files)\n", out, len(m.TrustedFiles))
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&defines, "define", "D", nil, "define NAME as VALUE in the template (repeatable)")
	cmd.Flags().StringVarP(&out, "output", "o", "", "where to write the manifest (default: standard output)")
	cmd.Flags().BoolVar(&force, "force", false, "replace an existing manifest")
	return cmd
}

// manifestMeasurement is what measure --json reports.
type manifestMeasurement struct {
	Manifest     string `json:"manifest"`
	MREnclave    string `json:"mrenclave"`
	MRSigner     string `json:"mrsigner,omitempty"` // when MANIFEST.sig signs it
	ISVProdID    uint16 `json:"isv_prod_id"`
	ISVSVN       uint16 `json:"isv_svn"`
	Debug        bool   `json:"debug"`
	Entrypoint   string `json:"entrypoint"`
	TrustedFiles int    `json:"trusted_files"`
}

func newManifestMeasureCommand() *cobra.Command {
	var asJSON, mrconfigid, hostdata bool
	cmd := &cobra.Command{
		Use:   "measure MANIFEST [--json]",
		Short: "Print the workload measurement (the simulated MRENCLAVE) of a manifest",
		Long: `measure prints the measurement of MANIFEST in hex: the MRENCLAVE that the simulated platform
reports for it, and that ppml run puts in the last 32 bytes of the report data (a policy's
manifest = [...]). With --json it prints the identity a policy names: with MRSIGNER when
MANIFEST.sig signs the manifest (a signature that does not is an error).

--mrconfigid prints the MRCONFIGID to launch a TDX trust domain with (the measurement followed by
16 zero bytes, 48 bytes), --hostdata the HOSTDATA to launch an SEV-SNP guest with (the
measurement, 32 bytes): ppml run in that VM then runs this manifest only (docs/cvm.md).`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := manifest.ParseFile(args[0])
			if err != nil {
				return err
			}
			if err := m.CheckHashed(); err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			mr := manifest.Measure(m)
			switch {
			case mrconfigid && (hostdata || asJSON), hostdata && asJSON:
				return usageError{fmt.Errorf("%s: give one of --mrconfigid, --hostdata and --json", cmd.CommandPath())}
			case mrconfigid:
				fmt.Fprintf(cmd.OutOrStdout(), "%x\n", cvm.MRConfigID(mr))
				return nil
			case hostdata:
				fmt.Fprintf(cmd.OutOrStdout(), "%x\n", cvm.HostData(mr))
				return nil
			case !asJSON:
				fmt.Fprintf(cmd.OutOrStdout(), "%x\n", mr)
				return nil
			}
			r := manifestMeasurement{
				Manifest: args[0], MREnclave: fmt.Sprintf("%x", mr), ISVProdID: m.ISVProdID, ISVSVN: m.ISVSVN,
				Debug: m.Debug, Entrypoint: m.Entrypoint, TrustedFiles: len(m.TrustedFiles),
			}
			sig, err := readManifestSignature(manifest.SignaturePath(args[0]), m)
			if err != nil {
				return err
			}
			if sig != nil {
				r.MRSigner = fmt.Sprintf("%x", sig.MRSigner())
			}
			b, _ := json.Marshal(r)
			fmt.Fprintln(cmd.OutOrStdout(), string(b))
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON object")
	cmd.Flags().BoolVar(&mrconfigid, "mrconfigid", false, "print the MRCONFIGID to launch a TDX trust domain with")
	cmd.Flags().BoolVar(&hostdata, "hostdata", false, "print the HOSTDATA to launch an SEV-SNP guest with")
	return cmd
}

// readManifestSignature reads the signature file name, if there is one, and checks that it signs m.
func readManifestSignature(name string, m *manifest.Manifest) (*manifest.Signature, error) {
	b, err := os.ReadFile(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	sig, err := manifest.ParseSignature(b)
	if err == nil {
		err = sig.Verify(m)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return sig, nil
}

func newManifestSignCommand() *cobra.Command {
	var keyPath string
	cmd := &cobra.Command{
		Use:   "sign MANIFEST --key KEY",
		Short: "Sign a manifest, writing MANIFEST.sig, and print MRSIGNER",
		Long: `sign signs the measurement of MANIFEST with its isvprodid, isvsvn and debug setting, as
gramine-sgx-sign does for an enclave, and writes the signature to MANIFEST.sig, replacing an
older one. It prints MRSIGNER, the SHA-256 of the key's public half, which a policy names
with isv_prod_id. KEY is a PEM Ed25519 or ECDSA P-256 key (ppml manifest gen-key).`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireFlags(cmd, "key"); err != nil {
				return err
			}
			b, err := os.ReadFile(keyPath)
			if err != nil {
				return fmt.Errorf("signing key: %w", err)
			}
			key, err := manifest.ParseKey(b)
			if err != nil {
				return fmt.Errorf("signing key %s: %w", keyPath, err)
			}
			m, err := manifest.ParseFile(args[0])
			if err != nil {
				return err
			}
			sig, err := manifest.Sign(m, key)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			name := manifest.SignaturePath(args[0])
			if err := atomicfile.WriteFile(name, sig.Marshal(), 0o644, true); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "signature written to %s\n", name)
			fmt.Fprintf(cmd.OutOrStdout(), "mrsigner %x\n", sig.MRSigner())
			return nil
		},
	}
	cmd.Flags().StringVarP(&keyPath, "key", "k", "", "the signing key (PEM)")
	return cmd
}

func newManifestGenKeyCommand() *cobra.Command {
	var keyPath string
	var force bool
	cmd := &cobra.Command{
		Use:   "gen-key -o KEY",
		Short: "Write a new Ed25519 manifest signing key and print its MRSIGNER",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlags(cmd, "output"); err != nil {
				return err
			}
			key, b, err := manifest.GenerateKey()
			if err != nil {
				return err
			}
			mr, err := manifest.MRSigner(key.Public())
			if err != nil {
				return err
			}
			if err := atomicfile.WriteFile(keyPath, b, 0o600, force); err != nil {
				return forceHint(err)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "signing key saved to %s\n", keyPath)
			fmt.Fprintf(cmd.OutOrStdout(), "mrsigner %x\n", mr)
			return nil
		},
	}
	cmd.Flags().StringVarP(&keyPath, "output", "o", "", "where to write the key (PEM, mode 0600)")
	cmd.Flags().BoolVar(&force, "force", false, "replace an existing key file")
	return cmd
}
