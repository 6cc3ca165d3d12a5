package main

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ppml/ppml/attest"
	"github.com/ppml/ppml/attest/sgx"
	"github.com/ppml/ppml/attest/trust"
	"github.com/ppml/ppml/collateral"
)

func newQuoteCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "quote",
		Short: "Show and verify attestation quotes",
	}
	cmd.AddCommand(newQuoteViewCommand(), newQuoteVerifyCommand())
	return cmd
}

func newQuoteViewCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "view FILE",
		Short: "Print the fields of an SGX quote, without verifying it",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			q, err := sgx.ParseQuote(b)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			printQuote(cmd.OutOrStdout(), q)
			return nil
		},
	}
}

func printQuote(w io.Writer, q *sgx.Quote) {
	h, b := &q.Header, &q.Body
	fmt.Fprintf(w, "SGX DCAP quote, version %d\n", h.Version)
	fmt.Fprintf(w, "  QE SVN %d, PCE SVN %d, QE vendor %x\n", h.QESVN, h.PCESVN, h.QEVendorID)
	fmt.Fprintf(w, "enclave\n")
	fmt.Fprintf(w, "  mrenclave    %x\n  mrsigner     %x\n", b.MREnclave, b.MRSigner)
	fmt.Fprintf(w, "  isv_prod_id  %d\n  isv_svn      %d\n", b.ISVProdID, b.ISVSVN)
	fmt.Fprintf(w, "  attributes   %x (debug %v)\n  cpu_svn      %x\n  miscselect   %#08x\n", b.Attributes, b.Debug(), b.CPUSVN, b.MiscSelect)
	fmt.Fprintf(w, "  report_data  %x\n", b.ReportData)
	fmt.Fprintf(w, "quoting enclave\n  mrsigner     %x\n  isv_prod_id  %d\n  isv_svn      %d\n", q.QEReport.MRSigner, q.QEReport.ISVProdID, q.QEReport.ISVSVN)
	certs, err := q.PCKCertificates()
	if err != nil {
		fmt.Fprintf(w, "PCK chain: %v\n", err)
		return
	}
	fmt.Fprintf(w, "PCK chain\n")
	for _, c := range certs {
		fmt.Fprintf(w, "  %s (until %s)\n", c.Subject.CommonName, c.NotAfter.Format(time.DateOnly))
	}
	if ext, err := sgx.PCKExtensionOf(certs[0]); err == nil {
		fmt.Fprintf(w, "  FMSPC %X, PCE ID %x, TCB components %v, PCE SVN %d\n", ext.FMSPC, ext.PCEID, ext.TCBComponents, ext.PCESVN)
	}
}

func newQuoteVerifyCommand() *cobra.Command {
	var collateralDir, at, simDir string
	var skipCRL, asJSON, snpReport bool
	var snpCerts []string
	cmd := &cobra.Command{
		Use:   "verify FILE [--collateral DIR] [--at RFC3339] [--sim-platform DIR] [--skip-crl] [--snp [--snp-cert FILE]...] [--json]",
		Short: "Verify an SGX or TDX quote, or a SEV-SNP report, and print what it attests",
		Long: `verify checks a quote completely: its structure and signatures, the certificate chain to the
root of trust, revocation, and the platform's TCB against the collateral. It exits 0 only when
the quote verifies. A TCB status below UpToDate (OutOfDate, SWHardeningNeeded, ...) is reported,
not refused, for a policy to judge, as Intel's library does; a revoked TCB or PCK certificate
does not verify.

The collateral of a genuine quote comes from --collateral, a folder of Intel PCS responses, or
else from ppml's cache of them, which fetches from Intel's PCS what it lacks or what is past its
next update (see docs/collateral.md). --sim-platform trusts a simulated platform instead, with
the collateral its folder holds. --snp verifies a SEV-SNP attestation report instead, against
AMD's roots, with the VCEK or VLEK certificate its certificate table carries or --snp-cert.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			quote, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			when := time.Now()
			if at != "" {
				if when, err = time.Parse(time.RFC3339, at); err != nil {
					return usageError{fmt.Errorf("--at: %w", err)}
				}
			}
			// flag is the one whose roots of trust verify the quote.
			kind, settings, flag := attest.SGX, trust.Settings{SkipCRL: skipCRL}, ""
			switch {
			case len(snpCerts) > 0 || snpReport:
				kind, settings.SNP, settings.SNPCertificates, flag = attest.SNP, true, snpCerts, "--snp-cert"
			case isTDXQuote(quote):
				if collateralDir == "" {
					return usageError{errors.New("a TDX quote needs --collateral DIR (its TDX TCB info and TD_QE identity)")}
				}
				kind, settings.TDXCollateral, flag = attest.TDX, collateralDir, "--collateral"
			case simDir != "":
				settings.SimPlatforms, flag = []string{simDir}, "--sim-platform"
			case collateralDir != "":
				settings.Collateral, flag = collateralDir, "--collateral"
			default:
				settings.Collateral = collateral.IntelPCS // through the cache
			}
			registry, err := settings.Registry()
			if err != nil && flag != "" {
				err = fmt.Errorf("%s: %w", flag, err)
			}
			if err != nil {
				return skipCRLHint(err)
			}
			claims, err := registry.Verify(cmd.Context(), kind, quote, when)
			if err != nil {
				return fmt.Errorf("%s does not verify: %w", args[0], skipCRLHint(err))
			}
			if asJSON {
				b, _ := json.Marshal(claims)
				fmt.Fprintln(cmd.OutOrStdout(), string(b))
				return nil
			}
			printClaims(cmd.OutOrStdout(), claims)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&collateralDir, "collateral", "", "folder of collateral (default: the cache, filled from Intel's PCS)")
	f.StringVar(&at, "at", "", "verify as of this time (RFC 3339; default now)")
	f.StringVar(&simDir, "sim-platform", "", "trust this simulated platform (and no other root)")
	f.BoolVar(&skipCRL, "skip-crl", false, "accept that revocation cannot be checked")
	f.BoolVar(&asJSON, "json", false, "print the claims as JSON")
	f.BoolVar(&snpReport, "snp", false, "FILE is a SEV-SNP attestation report")
	f.StringSliceVar(&snpCerts, "snp-cert", nil, "a VCEK or VLEK certificate for a report that carries none (implies --snp)")
	return cmd
}

// skipCRLHint adds to err, when it says that revocation cannot be checked, the flag that accepts
// that.
func skipCRLHint(err error) error {
	if errors.Is(err, sgx.ErrNoRevocationData) {
		return fmt.Errorf("%w (--skip-crl accepts that)", err)
	}
	return err
}

// isTDXQuote reports whether a quote's header names a TDX trust domain (TEE type 0x81).
func isTDXQuote(quote []byte) bool {
	return len(quote) >= 8 && binary.LittleEndian.Uint32(quote[4:8]) == 0x81
}

func printClaims(w io.Writer, c *attest.Claims) {
	fmt.Fprintf(w, "verified: %s evidence from the %s platform\n", strings.ToUpper(string(c.TEE)), c.Platform)
	line := func(name string, value any) { fmt.Fprintf(w, "  %-13s %v\n", name, value) }
	if c.MREnclave != nil {
		line("mrenclave", c.MREnclave)
		line("mrsigner", c.MRSigner)
		line("isv_prod_id", *c.ISVProdID)
		line("isv_svn", *c.ISVSVN)
	}
	if c.MRTD != nil {
		line("mrtd", c.MRTD)
	}
	if c.Measurement != nil {
		line("measurement", c.Measurement)
	}
	line("debug", c.Debug)
	line("tcb_status", c.TCBStatus)
	advisories := strings.Join(c.AdvisoryIDs, ", ")
	if advisories == "" {
		advisories = "none"
	}
	line("advisory_ids", advisories)
	line("report_data", c.ReportData)
}
