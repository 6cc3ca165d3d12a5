package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/ppml/ppml/attest/sgx"
	"github.com/ppml/ppml/collateral"
	"github.com/ppml/ppml/internal/atomicfile"
)

func newCollateralCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "collateral",
		Short: "Fetch and show Intel collateral for verifying SGX and TDX quotes offline",
		Long: `A collateral folder holds what Intel's Provisioning Certification Service (or a PCCS) serves
for verifying the quotes of a platform: its TCB info, the QE identity, the CRLs and their issuer
chains, byte for byte (docs/collateral.md). ppml quote verify --collateral DIR and ppml serve's
collateral setting read it.`,
	}
	cmd.AddCommand(newCollateralFetchCommand(), newCollateralShowCommand())
	return cmd
}

func newCollateralFetchCommand() *cobra.Command {
	var pcs, fromQuotes, force bool
	var pccs, tee, fmspc, ca, update, out string
	cmd := &cobra.Command{
		Use:   "fetch [--pcs | --pccs URL] (--tee sgx|tdx --fmspc FMSPC --ca processor|platform | --quote QUOTE...) [--update early|standard] -o DIR [--force]",
		Short: "Fetch a platform's collateral into a folder",
		Long: `fetch asks Intel's PCS (--pcs, the default) or a PCCS (--pccs URL) for the collateral of a
platform, named by --tee, --fmspc and --ca, or of the platforms whose quotes are given with
--quote (their FMSPC and PCK CA come from the PCK certificate in each quote; quotes of one TEE
and PCK CA share a folder, their TCB infos as tcb-info-<fmspc>.json). --update asks for the
early or the standard TCB evaluation. The folder is written only once everything has come.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if fromQuotes == (len(args) == 0) {
				return usageError{fmt.Errorf("%s: give quote files with --quote, or none and --tee, --fmspc and --ca", cmd.CommandPath())}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if pcs && pccs != "" {
				return usageError{errors.New("--pcs and --pccs: give one")}
			}
			if err := requireFlags(cmd, "output"); err != nil {
				return err
			}
			var platforms []collateral.Platform
			if fromQuotes {
				for _, name := range []string{"tee", "fmspc", "ca"} {
					if cmd.Flags().Changed(name) {
						return usageError{fmt.Errorf("--%s: the platform comes from the quotes", name)}
					}
				}
				for _, q := range args {
					b, err := os.ReadFile(q)
					if err != nil {
						return err
					}
					p, err := sgx.PlatformOfQuote(b)
					if err != nil {
						return fmt.Errorf("%s: %w", q, err)
					}
					platforms = append(platforms, p)
				}
			} else {
				if err := requireFlags(cmd, "tee", "fmspc", "ca"); err != nil {
					return err
				}
				platforms = append(platforms, collateral.Platform{TEE: collateral.TEE(tee), FMSPC: fmspc, CA: collateral.CA(ca)})
			}
			fetcher := &collateral.Fetcher{BaseURL: pccs, Update: update}
			dir, err := atomicfile.New(out, true, force)
			if err != nil {
				return forceHint(err)
			}
			if err := fetcher.FetchDir(cmd.Context(), dir.Temp, platforms...); err != nil {
				dir.Abort()
				return err
			}
			if err := dir.Commit(); err != nil {
				return forceHint(err)
			}
			for _, p := range platforms {
				fmt.Fprintf(cmd.OutOrStdout(), "%s: collateral of %v\n", out, p)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&pcs, "pcs", false, "fetch from Intel's PCS (the default)")
	f.StringVar(&pccs, "pccs", "", "fetch from this PCCS (base URL)")
	f.StringVar(&tee, "tee", "", "the platform's TEE: sgx or tdx")
	f.StringVar(&fmspc, "fmspc", "", "the platform's FMSPC (12 hex digits)")
	f.StringVar(&ca, "ca", "", "the CA of its PCK certificate: processor or platform")
	f.BoolVar(&fromQuotes, "quote", false, "take the platforms from the quote files given")
	f.StringVar(&update, "update", "", "the TCB evaluation: early or standard (default: the service's)")
	f.StringVarP(&out, "output", "o", "", "the folder to write")
	f.BoolVar(&force, "force", false, "replace the folder's files if it exists")
	return cmd
}

func newCollateralShowCommand() *cobra.Command {
	var at string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show DIR [--at TIME] [--json]",
		Short: "Print what a collateral folder holds and until when it is good",
		Long: `show prints each piece of a collateral folder: the TCB infos (TEE, version, FMSPC,
tcbEvaluationDataNumber), the QE identity, the CRLs and the issuer chains, each with its next
update (for certificates, their end of validity). The folder is good until the earliest of them:
past it a verifier refuses quotes. What has expired as of --at (RFC 3339 or Unix seconds;
default now) is warned about on standard error.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			when, err := parseTime(at)
			if err != nil {
				return usageError{fmt.Errorf("--at: %w", err)}
			}
			pieces, err := collateral.Inspect(args[0])
			if err != nil {
				return err
			}
			first := pieces[0]
			for _, p := range pieces[1:] {
				if p.NextUpdate.Before(first.NextUpdate) {
					first = p
				}
			}
			if asJSON {
				b, _ := json.Marshal(struct {
					Pieces    []collateral.Piece `json:"pieces"`
					GoodUntil time.Time          `json:"good_until"`
				}{pieces, first.NextUpdate})
				fmt.Fprintln(cmd.OutOrStdout(), string(b))
			} else {
				printPieces(cmd.OutOrStdout(), pieces)
				fmt.Fprintf(cmd.OutOrStdout(), "good until %s (%s)\n", first.NextUpdate.Format(time.RFC3339), first.File)
			}
			for _, p := range pieces {
				if !when.Before(p.NextUpdate) {
					fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s expired %s: fetch the collateral again (ppml collateral fetch)\n", p.File, p.NextUpdate.Format(time.RFC3339))
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&at, "at", "", "judge expiry as of this time (RFC 3339 or Unix seconds; default now)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	return cmd
}

func printPieces(w io.Writer, pieces []collateral.Piece) {
	date := func(t time.Time) string { return t.Format(time.RFC3339) }
	for _, p := range pieces {
		switch p.What {
		case "TCB info":
			fmt.Fprintf(w, "%s: TCB info %s version %d, FMSPC %s, tcbEvaluationDataNumber %d, issued %s, next update %s\n",
				p.File, p.ID, p.Version, p.FMSPC, p.TCBEvaluationDataNumber, date(p.IssueDate), date(p.NextUpdate))
		case "QE identity":
			fmt.Fprintf(w, "%s: QE identity %s version %d, tcbEvaluationDataNumber %d, issued %s, next update %s\n",
				p.File, p.ID, p.Version, p.TCBEvaluationDataNumber, date(p.IssueDate), date(p.NextUpdate))
		case "CRL":
			fmt.Fprintf(w, "%s: CRL of %s, %d revoked, issued %s, next update %s\n", p.File, p.ID, p.Revoked, date(p.IssueDate), date(p.NextUpdate))
		default:
			fmt.Fprintf(w, "%s: certificates of %s, valid until %s\n", p.File, p.ID, date(p.NextUpdate))
		}
	}
}
