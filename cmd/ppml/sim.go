package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ppml/ppml/attest/sim"
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
	cmd := &cobra.Command{
		Use:   "init DIR [--tcb-status STATUS]",
		Short: "Create a simulated platform in a new folder",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := sim.Init(args[0], status, time.Now())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "simulated platform %s: FMSPC %s, TCB %s\n", p.Dir, p.Settings.FMSPC, p.Settings.TCBStatus)
			return nil
		},
	}
	cmd.Flags().StringVar(&status, "tcb-status", "UpToDate", "what the platform's TCB evaluates to: "+strings.Join(sim.Statuses, ", "))
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
