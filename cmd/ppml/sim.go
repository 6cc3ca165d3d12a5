package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ppml/ppml/attest/sim"
	simgpu "github.com/ppml/ppml/attest/sim/gpu"
)

func newSimCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Create and use a simulated SGX, TDX or SEV-SNP platform (development only)",
		Long: `A simulated platform is a folder holding a simulated Intel PKI (root CA, PCK certificates
with SGX extensions, TCB signing key), the collateral Intel's PCS would serve for it, and a
simulated Quoting Enclave that writes real-format DCAP quotes, of an SGX enclave or of a TDX
trust domain; or a simulated AMD ARK, ASK and VCEK that sign real-format SEV-SNP reports. Its
evidence goes through the same verifiers as genuine evidence, and verifies only where the
platform is explicitly trusted (--sim-platform, or sim_platforms in a server configuration).

It protects nothing: it is for development, tests and demonstrations without a TEE.`,
	}
	cmd.AddCommand(newSimInitCommand(), newSimRevokeCommand(), newSimQuoteCommand())
	return cmd
}

func newSimInitCommand() *cobra.Command {
	var tee, status, mrtd, mrconfigid, measurement, hostdata string
	var gpus simgpu.Settings
	var quoteVersion int
	cmd := &cobra.Command{
		Use:   "init DIR [--tee sgx|tdx|snp] [--tcb-status STATUS] ...",
		Short: "Create a simulated platform in a new folder",
		Long: `init creates a simulated platform in the new folder DIR.

--tee sgx (the default) makes an SGX platform, whose quotes (DCAP v3) report the enclave the
attester names. --tee tdx makes a TDX platform running one trust domain: its quotes (version 4,
or 5 with --quote-version 5) report the TD's MRTD (--mrtd), MRCONFIGID (--mrconfigid, zero by
default) and RTMRs, which the folder keeps: RTMR0 to RTMR2 hold the simulated boot, RTMR3 what
is extended at run time. --tcb-status makes the platform's TCB level have that status. --tee snp
makes an SEV-SNP platform (simulated AMD ARK, ASK and VCEK; making the RSA-4096 keys takes a few
seconds) whose guest has the launch measurement --measurement and HOSTDATA --hostdata.

With --gpus N the platform has N simulated NVIDIA GPUs too (in DIR/gpu): their own device and
RIM roots, the RIMs of their driver and VBIOS (in DIR/gpu/rims, for a workload's gpus.rims), and
evidence of the real format that ppml run and ppml provision fetch put beside the CPU's
(docs/gpu.md).`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			flagsOf := map[string][]string{
				"sgx": {"tcb-status"},
				"tdx": {"tcb-status", "mrtd", "mrconfigid", "quote-version"},
				"snp": {"measurement", "hostdata"},
			}
			allowed, ok := flagsOf[tee]
			if !ok {
				return usageError{fmt.Errorf("--tee %q: want sgx, tdx or snp", tee)}
			}
			for _, name := range []string{"tcb-status", "mrtd", "mrconfigid", "quote-version", "measurement", "hostdata"} {
				if cmd.Flags().Changed(name) && !slices.Contains(allowed, name) {
					return usageError{fmt.Errorf("--%s is not for --tee %s", name, tee)}
				}
			}
			if gpus.Count < 0 || gpus.Count > 16 {
				return usageError{fmt.Errorf("--gpus %d: want 0 to 16", gpus.Count)}
			}
			out, now, dir := cmd.OutOrStdout(), time.Now(), ""
			switch tee {
			case "tdx":
				opts := sim.TDOptions{QuoteVersion: quoteVersion}
				for _, err := range []error{hexFlag("mrtd", mrtd, opts.MRTD[:], true), hexFlag("mrconfigid", mrconfigid, opts.MRConfigID[:], true)} {
					if err != nil {
						return err
					}
				}
				p, err := sim.InitTDX(args[0], opts, status, now)
				if err != nil {
					return err
				}
				dir = p.Dir
				td, err := p.TD()
				if err != nil {
					return err
				}
				fmt.Fprintf(out, "simulated TDX platform %s: FMSPC %s, TCB %s, quotes v%d\nmrtd %s\nmrconfigid %s\n", p.Dir, p.Settings.FMSPC, p.Settings.TCBStatus, td.QuoteVersion, td.MRTD, td.MRConfigID)
				for i, r := range td.RTMRs {
					fmt.Fprintf(out, "rtmr%d %s\n", i, r)
				}
			case "snp":
				var opts sim.SNPOptions
				for _, err := range []error{hexFlag("measurement", measurement, opts.Measurement[:], true), hexFlag("hostdata", hostdata, opts.HostData[:], true)} {
					if err != nil {
						return err
					}
				}
				p, err := sim.InitSNP(args[0], opts, now)
				if err != nil {
					return err
				}
				dir = p.Dir
				tcb := p.TCB()
				fmt.Fprintf(out, "simulated SEV-SNP platform %s\nmeasurement %s\nhostdata %s\nmin_tcb {bootloader = %d, tee = %d, snp = %d, microcode = %d}\n",
					p.Dir, p.Settings.Measurement, p.Settings.HostData, tcb.Bootloader, tcb.TEE, tcb.SNP, tcb.Microcode)
			default:
				p, err := sim.Init(args[0], status, now)
				if err != nil {
					return err
				}
				dir = p.Dir
				fmt.Fprintf(out, "simulated platform %s: FMSPC %s, TCB %s\n", p.Dir, p.Settings.FMSPC, p.Settings.TCBStatus)
			}
			if gpus.Count == 0 {
				return nil
			}
			g, err := simgpu.Init(dir, gpus, now)
			if err != nil {
				os.RemoveAll(dir)
				return fmt.Errorf("--gpus: %w", err)
			}
			s := g.Settings
			fmt.Fprintf(out, "simulated GPUs: %d Hopper, driver %s, VBIOS %s, CC mode %s; RIMs in %s\n", s.Count, s.DriverVersion, s.VBIOSVersion, s.Mode, filepath.Join(g.Dir, simgpu.RIMDir))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&tee, "tee", "sgx", "what the platform attests: sgx, tdx or snp")
	f.StringVar(&status, "tcb-status", "UpToDate", "what the platform's TCB evaluates to (sgx, tdx): "+strings.Join(sim.Statuses, ", "))
	f.StringVar(&mrtd, "mrtd", "", "the TD's MRTD (tdx; 48 bytes, hex)")
	f.StringVar(&mrconfigid, "mrconfigid", "", "the TD's MRCONFIGID (tdx; up to 48 bytes, hex; see ppml manifest measure --mrconfigid)")
	f.IntVar(&quoteVersion, "quote-version", 4, "the TDX quote version: 4 or 5 (tdx)")
	f.StringVar(&measurement, "measurement", "", "the guest's launch measurement (snp; 48 bytes, hex)")
	f.StringVar(&hostdata, "hostdata", "", "the guest's HOSTDATA (snp; up to 32 bytes, hex; see ppml manifest measure --hostdata)")
	f.IntVar(&gpus.Count, "gpus", 0, "how many simulated NVIDIA GPUs the platform has")
	f.StringVar(&gpus.DriverVersion, "gpu-driver", simgpu.DefaultDriver, "the driver version the simulated GPUs report")
	f.StringVar(&gpus.VBIOSVersion, "gpu-vbios", simgpu.DefaultVBIOS, "the VBIOS version the simulated GPUs report")
	f.StringVar(&gpus.Mode, "gpu-cc-mode", simgpu.ModeOn, "the simulated GPUs' CC mode: on, or devtools (debugging: their measurements differ from their RIMs)")
	return cmd
}

func newSimRevokeCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "revoke-pck DIR",
		Short: "Put the platform's PCK certificate on its CRL",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := sim.Load(args[0])
			if err != nil {
				return err
			}
			if err := p.RevokePCK(time.Now()); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "simulated platform %s: PCK certificate revoked\n", p.Dir)
			return nil
		},
	}
}

func newSimQuoteCommand() *cobra.Command {
	var mrenclave, mrsigner, reportData, out string
	var e sim.Enclave
	cmd := &cobra.Command{
		Use:   "quote DIR --mrenclave HEX --mrsigner HEX -o FILE",
		Short: "Write a quote from the simulated platform for an enclave",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireFlags(cmd, "mrenclave", "mrsigner", "output"); err != nil {
				return err
			}
			var rd [64]byte
			for _, err := range []error{
				hexFlag("mrenclave", mrenclave, e.MREnclave[:], false),
				hexFlag("mrsigner", mrsigner, e.MRSigner[:], false),
				hexFlag("report-data", reportData, rd[:], true),
			} {
				if err != nil {
					return err
				}
			}
			p, err := sim.Load(args[0])
			if err != nil {
				return err
			}
			quote, err := p.Quote(e, rd)
			if err != nil {
				return err
			}
			return os.WriteFile(out, quote, 0o644)
		},
	}
	f := cmd.Flags()
	f.StringVar(&mrenclave, "mrenclave", "", "the enclave measurement (32 bytes, hex)")
	f.StringVar(&mrsigner, "mrsigner", "", "the signer's measurement (32 bytes, hex)")
	f.Uint16Var(&e.ISVProdID, "isv-prod-id", 0, "the product ID")
	f.Uint16Var(&e.ISVSVN, "isv-svn", 0, "the security version")
	f.BoolVar(&e.Debug, "debug", false, "report a debug enclave")
	f.StringVar(&reportData, "report-data", "", "up to 64 bytes of report data (hex)")
	f.StringVarP(&out, "output", "o", "", "where to write the quote")
	return cmd
}
