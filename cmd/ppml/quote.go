package main

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
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
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "view FILE [--json]",
		Short: "Print the fields of an SGX or TDX quote, without verifying it",
		Long: `view prints what an SGX or TDX DCAP quote says, without verifying it: its header, the
attested enclave (SGX) or trust domain (TDX: MRTD, the RTMRs, the report data, ...), the quoting
enclave and the PCK certificate chain. FILE is the binary quote as the TEE wrote it: versions
3 to 5, SGX enclaves and TDX trust domains (TD 1.0 and TD 1.5 bodies).`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			if !isTDXQuote(b) && !isSGXQuote(b) {
				return fmt.Errorf("%s is not an SGX or TDX quote: it does not begin with a DCAP quote header (give the binary quote, not base64 or hex)", args[0])
			}
			q, err := sgx.ParseQuote(b)
			if err != nil {
				return fmt.Errorf("%s: %s quote: %w", args[0], teeOfQuote(b), err)
			}
			v := viewQuote(q)
			if asJSON {
				b, _ := json.Marshal(v)
				fmt.Fprintln(cmd.OutOrStdout(), string(b))
				return nil
			}
			v.print(cmd.OutOrStdout())
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	return cmd
}

// quoteView is what quote view shows of a quote.
type quoteView struct {
	TEE        attest.Kind  `json:"tee"`
	Version    uint16       `json:"version"`
	Body       string       `json:"body"` // "SGX enclave", "TD 1.0", "TD 1.5"
	Trailing   int          `json:"trailing_bytes,omitempty"`
	QESVN      uint16       `json:"qe_svn"`
	PCESVN     uint16       `json:"pce_svn"`
	QEVendorID attest.Hex   `json:"qe_vendor_id"`
	Enclave    *enclaveView `json:"enclave,omitempty"` // SGX
	TD         *tdView      `json:"td,omitempty"`      // TDX
	QE         qeView       `json:"quoting_enclave"`
	// PCKChain is the PCK certificate chain, leaf first, and PCK the leaf's SGX extension; or
	// PCKError says why the chain does not parse.
	PCKChain []pckCertView `json:"pck_chain,omitempty"`
	PCK      *pckView      `json:"pck,omitempty"`
	PCKError string        `json:"pck_chain_error,omitempty"`
}

// enclaveView is the attested SGX enclave.
type enclaveView struct {
	MREnclave  attest.Hex `json:"mrenclave"`
	MRSigner   attest.Hex `json:"mrsigner"`
	ISVProdID  uint16     `json:"isv_prod_id"`
	ISVSVN     uint16     `json:"isv_svn"`
	Attributes attest.Hex `json:"attributes"`
	Debug      bool       `json:"debug"`
	CPUSVN     attest.Hex `json:"cpu_svn"`
	MiscSelect uint32     `json:"miscselect"`
	ReportData attest.Hex `json:"report_data"`
}

// tdView is the attested TDX trust domain.
type tdView struct {
	MRTD           attest.Hex   `json:"mrtd"`
	RTMRs          []attest.Hex `json:"rtmrs"`
	ReportData     attest.Hex   `json:"report_data"`
	TDAttributes   attest.Hex   `json:"td_attributes"`
	Debug          bool         `json:"debug"`
	XFAM           attest.Hex   `json:"xfam"`
	MRConfigID     attest.Hex   `json:"mr_config_id"`
	MROwner        attest.Hex   `json:"mr_owner"`
	MROwnerConfig  attest.Hex   `json:"mr_owner_config"`
	TEETCBSVN      attest.Hex   `json:"tee_tcb_svn"`
	MRSEAM         attest.Hex   `json:"mr_seam"`
	MRSignerSEAM   attest.Hex   `json:"mr_signer_seam"`
	SEAMAttributes attest.Hex   `json:"seam_attributes"`
	// TD 1.5 only.
	TEETCBSVN2  attest.Hex `json:"tee_tcb_svn2,omitempty"`
	MRServiceTD attest.Hex `json:"mr_service_td,omitempty"`
}

// qeView is the quoting enclave.
type qeView struct {
	MRSigner  attest.Hex `json:"mrsigner"`
	ISVProdID uint16     `json:"isv_prod_id"`
	ISVSVN    uint16     `json:"isv_svn"`
}

type pckCertView struct {
	Subject  string    `json:"subject"`
	NotAfter time.Time `json:"not_after"`
}

type pckView struct {
	FMSPC         attest.Hex `json:"fmspc"`
	PCEID         attest.Hex `json:"pce_id"`
	TCBComponents [16]uint8  `json:"tcb_components"`
	PCESVN        uint16     `json:"pce_svn"`
}

// bodyNames names the body types of a quote.
var bodyNames = map[uint16]string{sgx.BodySGX: "SGX enclave", sgx.BodyTD10: "TD 1.0", sgx.BodyTD15: "TD 1.5"}

func viewQuote(q *sgx.Quote) *quoteView {
	h := &q.Header
	v := &quoteView{
		TEE: attest.SGX, Version: h.Version, Body: bodyNames[q.BodyType], Trailing: q.Trailing,
		QESVN: h.QESVN, PCESVN: h.PCESVN, QEVendorID: h.QEVendorID[:],
		QE: qeView{MRSigner: q.QEReport.MRSigner[:], ISVProdID: q.QEReport.ISVProdID, ISVSVN: q.QEReport.ISVSVN},
	}
	if td := q.TD; td != nil {
		v.TEE = attest.TDX
		v.TD = &tdView{
			MRTD: td.MRTD[:], ReportData: td.ReportData[:], TDAttributes: td.TDAttributes[:], Debug: td.Debug(),
			XFAM: td.XFAM[:], MRConfigID: td.MRConfigID[:], MROwner: td.MROwner[:], MROwnerConfig: td.MROwnerConfig[:],
			TEETCBSVN: td.TEETCBSVN[:], MRSEAM: td.MRSEAM[:], MRSignerSEAM: td.MRSignerSEAM[:], SEAMAttributes: td.SEAMAttributes[:],
		}
		for i := range td.RTMRs {
			v.TD.RTMRs = append(v.TD.RTMRs, td.RTMRs[i][:])
		}
		if q.BodyType == sgx.BodyTD15 {
			v.TD.TEETCBSVN2, v.TD.MRServiceTD = td.TEETCBSVN2[:], td.MRServiceTD[:]
		}
	} else {
		b := &q.Body
		v.Enclave = &enclaveView{
			MREnclave: b.MREnclave[:], MRSigner: b.MRSigner[:], ISVProdID: b.ISVProdID, ISVSVN: b.ISVSVN,
			Attributes: b.Attributes[:], Debug: b.Debug(), CPUSVN: b.CPUSVN[:], MiscSelect: b.MiscSelect,
			ReportData: b.ReportData[:],
		}
	}
	v.viewPCKChain(q)
	return v
}

// viewPCKChain adds the PCK chain of q's certification data, parsed by attest/sgx.
func (v *quoteView) viewPCKChain(q *sgx.Quote) {
	certs, err := q.PCKCertificates()
	if err != nil {
		v.PCKError = err.Error()
		return
	}
	for _, c := range certs {
		v.PCKChain = append(v.PCKChain, pckCertView{Subject: c.Subject.CommonName, NotAfter: c.NotAfter})
	}
	if ext, err := sgx.PCKExtensionOf(certs[0]); err == nil {
		v.PCK = &pckView{FMSPC: ext.FMSPC[:], PCEID: ext.PCEID[:], TCBComponents: ext.TCBComponents, PCESVN: ext.PCESVN}
	}
}

func (v *quoteView) print(w io.Writer) {
	fmt.Fprintf(w, "%s DCAP quote, version %d, %s body\n", strings.ToUpper(string(v.TEE)), v.Version, v.Body)
	if v.Trailing > 0 {
		fmt.Fprintf(w, "  %d bytes after the signature data (ignored: no signature covers them)\n", v.Trailing)
	}
	fmt.Fprintf(w, "  QE SVN %d, PCE SVN %d, QE vendor %s\n", v.QESVN, v.PCESVN, v.QEVendorID)
	if e := v.Enclave; e != nil {
		fmt.Fprintf(w, "enclave\n")
		fmt.Fprintf(w, "  mrenclave    %s\n  mrsigner     %s\n", e.MREnclave, e.MRSigner)
		fmt.Fprintf(w, "  isv_prod_id  %d\n  isv_svn      %d\n", e.ISVProdID, e.ISVSVN)
		fmt.Fprintf(w, "  attributes   %s (debug %v)\n  cpu_svn      %s\n  miscselect   %#08x\n", e.Attributes, e.Debug, e.CPUSVN, e.MiscSelect)
		fmt.Fprintf(w, "  report_data  %s\n", e.ReportData)
	}
	if td := v.TD; td != nil {
		line := func(name string, value any) { fmt.Fprintf(w, "  %-16s %v\n", name, value) }
		fmt.Fprintf(w, "trust domain\n")
		line("mrtd", td.MRTD)
		for i, r := range td.RTMRs {
			line(fmt.Sprintf("rtmr%d", i), r)
		}
		line("report_data", td.ReportData)
		line("td_attributes", fmt.Sprintf("%s (debug %v)", td.TDAttributes, td.Debug))
		line("xfam", td.XFAM)
		line("mr_config_id", td.MRConfigID)
		line("mr_owner", td.MROwner)
		line("mr_owner_config", td.MROwnerConfig)
		line("tee_tcb_svn", td.TEETCBSVN)
		line("mr_seam", td.MRSEAM)
		line("mr_signer_seam", td.MRSignerSEAM)
		line("seam_attributes", td.SEAMAttributes)
		if td.TEETCBSVN2 != nil {
			line("tee_tcb_svn2", td.TEETCBSVN2)
			line("mr_service_td", td.MRServiceTD)
		}
	}
	fmt.Fprintf(w, "quoting enclave\n  mrsigner     %s\n  isv_prod_id  %d\n  isv_svn      %d\n", v.QE.MRSigner, v.QE.ISVProdID, v.QE.ISVSVN)
	if v.PCKError != "" {
		fmt.Fprintf(w, "PCK chain: %s\n", v.PCKError)
		return
	}
	fmt.Fprintf(w, "PCK chain\n")
	for _, c := range v.PCKChain {
		fmt.Fprintf(w, "  %s (until %s)\n", c.Subject, c.NotAfter.Format(time.DateOnly))
	}
	if p := v.PCK; p != nil {
		fmt.Fprintf(w, "  FMSPC %X, PCE ID %s, TCB components %v, PCE SVN %d\n", []byte(p.FMSPC), p.PCEID, p.TCBComponents, p.PCESVN)
	}
}

func newQuoteVerifyCommand() *cobra.Command {
	var collateralDir, at, simDir string
	var skipCRL, asJSON, snpReport bool
	var snpCerts []string
	var snpCRL string
	cmd := &cobra.Command{
		Use:   "verify FILE [--collateral DIR|URL] [--at TIME] [--sim-platform DIR] [--skip-crl] [--snp [--snp-cert FILE]... [--snp-crl DIR]] [--json]",
		Short: "Verify an SGX or TDX quote, or a SEV-SNP report, and print what it attests",
		Long: `verify checks a quote completely: its structure and signatures, the certificate chain to the
root of trust, revocation, and the platform's TCB against the collateral. It exits 0 only when
the quote verifies. SGX and TDX quotes of versions 3 to 5 are verified as Intel's Quote
Verification Library does. A TCB status below UpToDate (OutOfDate, SWHardeningNeeded,
TDRelaunchAdvised, ...) is reported, not refused, for a policy to judge, and explained: what
is behind the newest TCB level (CPU microcode or BIOS, the TDX module, the QE, the PCE), what to
update, and which advisories apply. A revoked TCB or PCK certificate, and a platform below every
TCB level, do not verify. --at gives the time to verify as of, in RFC 3339 or Unix seconds.

The collateral of a genuine SGX or TDX quote comes from --collateral, a folder of Intel PCS
responses or the URL of Intel's PCS or of a PCCS, or else from Intel's PCS: from a URL through
ppml's cache of responses, which fetches what it lacks or what is past its next update (see
docs/collateral.md). --sim-platform trusts a simulated platform instead, with
the collateral its folder holds. --snp verifies a SEV-SNP attestation report instead, against
AMD's roots, with the VCEK or VLEK certificate its certificate table carries or --snp-cert, and
AMD's CRLs of --snp-crl (a folder of the CRLs AMD's KDS serves per product line), without which
it is refused unless --skip-crl.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			quote, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			when, err := parseTime(at)
			if err != nil {
				return usageError{fmt.Errorf("--at: %w", err)}
			}
			// flag is the one whose roots of trust verify the quote.
			kind, settings, flag := attest.SGX, trust.Settings{SkipCRL: skipCRL}, ""
			switch {
			case len(snpCerts) > 0 || snpReport || snpCRL != "":
				kind, settings.SNP, settings.SNPCertificates, settings.SNPCRL, flag = attest.SNP, true, snpCerts, snpCRL, "--snp-cert"
				if snpCRL != "" {
					flag = "" // errors name the file, certificate or CRL, that fails
				}
			case simDir != "":
				settings.SimPlatforms, flag = []string{simDir}, "--sim-platform"
			case collateralDir != "":
				settings.Collateral, flag = collateralDir, "--collateral"
			default:
				settings.Collateral = collateral.IntelPCS // through the cache
			}
			if kind == attest.SGX && isTDXQuote(quote) {
				kind = attest.TDX
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
	f.StringVar(&collateralDir, "collateral", "", "folder of collateral, or the URL of a PCCS or Intel's PCS, fetched through the cache (default: Intel's PCS)")
	f.StringVar(&at, "at", "", "verify as of this time (RFC 3339 or Unix seconds; default now)")
	f.StringVar(&simDir, "sim-platform", "", "trust this simulated platform (and no other root)")
	f.BoolVar(&skipCRL, "skip-crl", false, "accept that revocation cannot be checked")
	f.BoolVar(&asJSON, "json", false, "print the claims as JSON")
	f.BoolVar(&snpReport, "snp", false, "FILE is a SEV-SNP attestation report")
	f.StringSliceVar(&snpCerts, "snp-cert", nil, "a VCEK or VLEK certificate for a report that carries none (implies --snp)")
	f.StringVar(&snpCRL, "snp-crl", "", "a folder of AMD's CRLs, as AMD's KDS serves them (implies --snp)")
	return cmd
}

// parseTime reads a time (--at) in RFC 3339 or as Unix seconds; "" is now.
func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Now(), nil
	}
	if secs, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Unix(secs, 0), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return t, fmt.Errorf("%q is neither an RFC 3339 time (2024-09-02T07:43:52Z) nor Unix seconds", s)
	}
	return t, nil
}

// skipCRLHint adds to err, when it says that revocation cannot be checked, the flag that accepts
// that.
func skipCRLHint(err error) error {
	if errors.Is(err, sgx.ErrNoRevocationData) {
		return fmt.Errorf("%w (--skip-crl accepts that)", err)
	}
	return err
}

// teeOfQuote names the TEE a quote header names.
func teeOfQuote(quote []byte) string {
	if isTDXQuote(quote) {
		return "TDX"
	}
	return "SGX"
}

// isTDXQuote reports whether a quote's header names a TDX trust domain (TEE type 0x81).
func isTDXQuote(quote []byte) bool {
	return len(quote) >= 8 && binary.LittleEndian.Uint32(quote[4:8]) == 0x81
}

// isSGXQuote reports whether b begins as an SGX DCAP quote does: version 3 to 5, TEE type 0.
func isSGXQuote(b []byte) bool {
	if len(b) < 8 {
		return false
	}
	version := binary.LittleEndian.Uint16(b)
	return version >= 3 && version <= 5 && binary.LittleEndian.Uint32(b[4:8]) == 0
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
		for i, r := range c.RTMRs {
			line(fmt.Sprintf("rtmr%d", i), r)
		}
	}
	if td := c.TD; td != nil {
		a := td.Attributes
		line("td_attributes", fmt.Sprintf("%s (debug %v, sept_ve_disable %v, pks %v, kl %v, perfmon %v)", a.Raw, a.Debug, a.SEPTVEDisable, a.PKS, a.KL, a.PerfMon))
		line("xfam", td.XFAM)
		line("mr_config_id", td.MRConfigID)
		line("mr_owner", td.MROwner)
		line("mr_owner_config", td.MROwnerConfig)
		if td.MRServiceTD != nil {
			line("mr_service_td", td.MRServiceTD)
		}
		line("tee_tcb_svn", td.TEETCBSVN)
		if td.TEETCBSVN2 != nil {
			line("tee_tcb_svn2", td.TEETCBSVN2)
		}
	}
	if c.Measurement != nil {
		line("measurement", c.Measurement)
	}
	if s := c.SNP; s != nil {
		p := s.Policy
		line("product_line", fmt.Sprintf("%s (report version %d, signed by its %s)", s.ProductLine, s.ReportVersion, strings.ToUpper(s.SigningKey)))
		line("vmpl", s.VMPL)
		line("guest_svn", s.GuestSVN)
		line("policy", fmt.Sprintf("%s (debug %v, smt %v, migrate_ma %v, single_socket %v, abi %d.%d)", p.Raw, p.Debug, p.SMT, p.MigrateMA, p.SingleSocket, p.ABIMajor, p.ABIMinor))
		line("host_data", s.HostData)
		for _, t := range []struct {
			name string
			tcb  attest.SNPTCB
		}{{"reported_tcb", s.ReportedTCB}, {"current_tcb", s.CurrentTCB}, {"committed_tcb", s.CommittedTCB}, {"launch_tcb", s.LaunchTCB}} {
			line(t.name, fmt.Sprintf("%v (%s)", t.tcb, t.tcb.Raw))
		}
		line("firmware", fmt.Sprintf("%s (committed %s)", s.CurrentFirmware, s.CommittedFirmware))
		line("revocation", s.Revocation)
	}
	line("debug", c.Debug)
	line("tcb_status", c.TCBStatus)
	if c.SNP == nil { // AMD's evidence names no advisories
		advisories := strings.Join(c.AdvisoryIDs, ", ")
		if advisories == "" {
			advisories = "none"
		}
		line("advisory_ids", advisories)
	}
	if c.TCBDate != nil {
		line("tcb_date", c.TCBDate.Format(time.DateOnly))
		line("tcb_eval_num", c.TCBEvaluationDataNumber)
	}
	if m := c.TDXModule; m != nil {
		line("tdx_module", fmt.Sprintf("%s ISVSVN %d: %s", m.ID, m.ISVSVN, m.Status))
	}
	if c.QEStatus != "" {
		line("qe_status", c.QEStatus)
	}
	line("report_data", c.ReportData)
	if c.TCBStatus != "" {
		fmt.Fprintf(w, "%s\n", c.TCBExplanation())
	}
}
