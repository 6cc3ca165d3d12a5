package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ppml/ppml/attest/sim"
	simgpu "github.com/ppml/ppml/attest/sim/gpu"
)

func newSimCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Create and use a simulated SGX platform (development only)",
		Long: `A simulated platform is a folder holding a simulated Intel PKI (root CA, PCK certificates
with SGX extensions, TCB signing key), the collateral Intel's PCS would serve for it, and a
simulated Quoting Enclave that writes real-format DCAP quotes. Its quotes go through the same
verifier as genuine ones, and verify only where the platform is explicitly trusted
(--sim-platform, or sim_platforms in a server configuration).

It protects nothing: it is for development, tests and demonstrations without a TEE.`,
	}
	cmd.AddCommand(newSimInitCommand(), newSimRevokeCommand(), newSimQuoteCommand())
	return cmd
}

func newSimInitCommand() *cobra.Command {
	var status string
	var gpus simgpu.Settings
	cmd := &cobra.Command{
		Use:   "init DIR [--tcb-status STATUS] [--gpus N]",
		Short: "Create a simulated platform in a new folder",
		Long: `Create a simulated platform in a new folder. With --gpus N it has N simulated NVIDIA GPUs
too (in DIR/gpu): their own device and RIM roots, the RIMs of their driver and VBIOS (in
DIR/gpu/rims, for a workload's gpus.rims), and evidence of the real format that ppml run and
ppml provision fetch --tee sim put beside the CPU's (docs/gpu.md).`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if gpus.Count < 0 || gpus.Count > 16 {
				return usageError{fmt.Errorf("--gpus %d: want 0 to 16", gpus.Count)}
			}
			now := time.Now()
			p, err := sim.Init(args[0], status, now)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "simulated platform %s: FMSPC %s, TCB %s\n", p.Dir, p.Settings.FMSPC, p.Settings.TCBStatus)
			if gpus.Count == 0 {
				return nil
			}
			g, err := simgpu.Init(p.Dir, gpus, now)
			if err != nil {
				os.RemoveAll(p.Dir)
				return fmt.Errorf("--gpus: %w", err)
			}
			s := g.Settings
			fmt.Fprintf(cmd.OutOrStdout(), "simulated GPUs: %d Hopper, driver %s, VBIOS %s, CC mode %s; RIMs in %s\n", s.Count, s.DriverVersion, s.VBIOSVersion, s.Mode, filepath.Join(g.Dir, simgpu.RIMDir))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&status, "tcb-status", "UpToDate", "what the platform's TCB evaluates to: "+strings.Join(sim.Statuses, ", "))
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
