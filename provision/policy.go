package provision

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/ppml/ppml/attest"
	"github.com/ppml/ppml/attest/sgx"
	"github.com/ppml/ppml/store"
)

// TCB statuses a workload may accept, in Intel's words.
var tcbStatuses = []string{
	"UpToDate", "SWHardeningNeeded", "ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded",
	"OutOfDate", "OutOfDateConfigurationNeeded", "TDRelaunchAdvised", "TDRelaunchAdvisedConfigurationNeeded",
}

// Workload is one [[workload]] of the policy: the identity a TEE must prove, and the keys it
// then receives. Every constraint that is set must hold; the rest of the configuration denies.
type Workload struct {
	Name string `toml:"name"`
	TEE  string `toml:"tee"` // "sgx" (Gramine or simulated), "tdx" or "snp"

	// SGX: any of MREnclave, or MRSigner with ISVProdID and MinISVSVN. SigFile reads all four
	// from a Gramine .sig file.
	MREnclave []string `toml:"mrenclave"`
	MRSigner  string   `toml:"mrsigner"`
	ISVProdID *uint16  `toml:"isv_prod_id"`
	MinISVSVN *uint16  `toml:"min_isv_svn"`
	SigFile   string   `toml:"sig_file"`

	// TDX: any of MRTD, and each RTMR given (index 0 to 3; "" skips one); any of MRConfigID,
	// which the VM's launcher set (docs/cvm.md).
	MRTD       []string `toml:"mrtd"`
	RTMRs      []string `toml:"rtmrs"`
	MRConfigID []string `toml:"mr_config_id"`

	// SEV-SNP: any of Measurement, and the constraints of SNPWorkload.
	Measurement []string `toml:"measurement"`
	SNPWorkload

	// Manifest: any of these workload measurements (ppml manifest measure), which ppml run puts
	// in the last 32 bytes of the report data (any TEE).
	Manifest []string `toml:"manifest"`
	// RTMR3Manifest requires a TD's RTMR3 event log to name the report data's manifest and,
	// where Manifest is given, to name no other manifest (rtmr3.go).
	RTMR3Manifest bool `toml:"rtmr3_manifest"`

	// AllowSimulated admits evidence from the simulated platforms the server trusts
	// (sim_platforms): development only, since anyone holding such a platform's folder can
	// claim any measurement.
	AllowSimulated bool `toml:"allow_simulated"`

	// GPU, if set, says the GPUs the TEE must have attached ([GPUPolicy], gpu.go).
	GPU *GPUPolicy `toml:"gpus"`

	AllowDebug bool     `toml:"allow_debug"`
	AcceptTCB  []string `toml:"accept_tcb"` // default: UpToDate only
	Keys       []string `toml:"keys"`       // the keys it receives; the first is Gramine's

	TCBPolicy
	TDHardening
}

// TCBPolicy is what a workload asks of the platform's TCB beyond its status, whatever the TEE.
type TCBPolicy struct {
	// MinTCBDate refuses evidence whose TCB date (the earliest date of its matched TCB levels)
	// is before it: a date (2024-03-13) or an RFC 3339 time. Default: none.
	MinTCBDate string `toml:"min_tcb_date"`
	// MinTCBEvaluationDataNumber refuses evidence verified against collateral older than this
	// TCB evaluation data number. Default: 0, none.
	MinTCBEvaluationDataNumber int `toml:"min_tcb_evaluation_data_number"`
	// DenyAdvisories refuses evidence to which one of these advisories applies;
	// AllowAdvisories, when given, refuses evidence to which another one applies.
	DenyAdvisories  []string `toml:"deny_advisories"`
	AllowAdvisories []string `toml:"allow_advisories"`

	minTCBDate time.Time
}

// TDHardening is what a TDX workload asks of its trust domain beyond its measurements, as the
// strictest open verifiers do. Debug TDs are refused unless allow_debug.
type TDHardening struct {
	// AllowSEPTVE admits a TD without SEPT_VE_DISABLE, in which the host can make the guest
	// take #VE exceptions on pending pages. Default: refused.
	AllowSEPTVE bool `toml:"allow_sept_ve"`
	// MRServiceTD lists the MRSERVICETD values (hex, 48 bytes) admitted besides zero: a TD 1.5
	// bound to service TDs (a migration TD, ...) trusts them with its state. Default: only zero.
	MRServiceTD []string `toml:"mr_service_td"`
}

// check validates w and fills in what its .sig file and defaults give. dir is the folder that
// relative paths are relative to.
func (w *Workload) check(dir string) error {
	if w.Name == "" {
		return errors.New("a workload has no name")
	}
	fail := func(format string, args ...any) error {
		return fmt.Errorf("workload %q: %s", w.Name, fmt.Sprintf(format, args...))
	}
	if w.SigFile != "" {
		if err := w.readSigFile(resolve(dir, w.SigFile)); err != nil {
			return fail("%v", err)
		}
	}
	for _, list := range []struct {
		name   string
		values []string
		size   int
	}{
		{"mrenclave", w.MREnclave, 32}, {"mrsigner", nonEmpty(w.MRSigner), 32}, {"mrtd", w.MRTD, 48},
		{"rtmrs", nonEmpty(w.RTMRs...), 48}, {"measurement", w.Measurement, 48}, {"host_data", w.HostData, 32}, {"mr_service_td", w.MRServiceTD, 48},
		{"mr_config_id", w.MRConfigID, 48}, {"manifest", w.Manifest, 32},
	} {
		for _, v := range list.values {
			if b, err := hex.DecodeString(v); err != nil || len(b) != list.size {
				return fail("%s %q is not %d bytes in hex", list.name, v, list.size)
			}
		}
	}
	identified := false
	switch w.TEE {
	case string(attest.SGX):
		identified = len(w.MREnclave) > 0 || w.MRSigner != "" && w.ISVProdID != nil
		if w.MRSigner != "" && w.ISVProdID == nil && len(w.MREnclave) == 0 {
			return fail("mrsigner without isv_prod_id would admit every enclave of that signer")
		}
	case string(attest.TDX):
		identified = len(w.MRTD) > 0
		if len(w.RTMRs) > 4 {
			return fail("a TD has 4 RTMRs, not %d", len(w.RTMRs))
		}
	case string(attest.SNP):
		identified = len(w.Measurement) > 0
	default:
		return fail("tee %q is not sgx, tdx or snp", w.TEE)
	}
	if err := w.checkSNP(w.TEE); err != nil {
		return fail("%v", err)
	}
	if !identified {
		return fail("no measurement: it would admit any %s workload (give mrenclave, mrsigner and isv_prod_id, sig_file, mrtd or measurement)", w.TEE)
	}
	if err := w.TCBPolicy.check(); err != nil {
		return fail("%v", err)
	}
	if w.TEE == string(attest.SNP) && (w.DenyAdvisories != nil || w.AllowAdvisories != nil) {
		// SEV-SNP evidence names no advisory: the lists would admit everything.
		return fail("deny_advisories and allow_advisories name Intel's advisories, which tee = \"snp\" evidence never carries: use min_tcb")
	}
	if w.TEE != string(attest.TDX) && (w.AllowSEPTVE || len(w.MRServiceTD) > 0 || len(w.MRConfigID) > 0) {
		return fail("allow_sept_ve, mr_service_td and mr_config_id are for tee = \"tdx\"")
	}
	if w.TEE != string(attest.TDX) && w.RTMR3Manifest {
		return fail("rtmr3_manifest is for tee = \"tdx\": only a TD has RTMR3")
	}
	if len(w.AcceptTCB) == 0 {
		w.AcceptTCB = []string{"UpToDate"}
	}
	for _, s := range w.AcceptTCB {
		if !slices.Contains(tcbStatuses, s) {
			return fail("accept_tcb %q is not one of %s", s, strings.Join(tcbStatuses, ", "))
		}
	}
	if w.GPU != nil {
		if err := w.GPU.check(dir); err != nil {
			return fail("%v", err)
		}
	}
	if len(w.Keys) == 0 {
		return fail("no keys to release")
	}
	for _, k := range w.Keys {
		if err := store.CheckName(k); err != nil {
			return fail("key %q: %v", k, err)
		}
	}
	return nil
}

func nonEmpty(values ...string) []string {
	return slices.DeleteFunc(slices.Clone(values), func(s string) bool { return s == "" })
}

// readSigFile takes the SGX identity from a Gramine .sig file (SIGSTRUCT).
func (w *Workload) readSigFile(name string) error {
	b, err := os.ReadFile(name)
	if err != nil {
		return err
	}
	s, err := sgx.ParseSigStruct(b)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	mrsigner := hex.EncodeToString(s.MRSigner[:])
	switch {
	case w.MRSigner != "" && !strings.EqualFold(w.MRSigner, mrsigner):
		return fmt.Errorf("mrsigner %s differs from %s's %s", w.MRSigner, name, mrsigner)
	case w.ISVProdID != nil && *w.ISVProdID != s.ISVProdID:
		return fmt.Errorf("isv_prod_id %d differs from %s's %d", *w.ISVProdID, name, s.ISVProdID)
	case w.MinISVSVN != nil && *w.MinISVSVN != s.ISVSVN:
		return fmt.Errorf("min_isv_svn %d differs from %s's ISVSVN %d (leave it out, or give no sig_file)", *w.MinISVSVN, name, s.ISVSVN)
	}
	w.MREnclave = append(w.MREnclave, hex.EncodeToString(s.MREnclave[:]))
	w.MRSigner = mrsigner
	w.ISVProdID, w.MinISVSVN = &s.ISVProdID, &s.ISVSVN
	return nil
}

// admits returns nil if the claims satisfy every constraint of w, else the first that fails.
func (w *Workload) admits(c *attest.Claims) error {
	if string(c.TEE) != w.TEE {
		return fmt.Errorf("the evidence is %s, the workload %s", c.TEE, w.TEE)
	}
	if c.Platform == attest.Simulated && !w.AllowSimulated {
		return errors.New("evidence from a simulated platform is not allowed (allow_simulated = false)")
	}
	type check struct {
		name    string
		allowed []string
		got     attest.Hex
	}
	checks := []check{
		{"mrenclave", w.MREnclave, c.MREnclave},
		{"mrsigner", nonEmpty(w.MRSigner), c.MRSigner},
		{"mrtd", w.MRTD, c.MRTD},
		{"measurement", w.Measurement, c.Measurement},
		{"manifest", w.Manifest, attest.Workload(c.ReportData)},
	}
	for i, r := range w.RTMRs {
		if r != "" {
			var got attest.Hex
			if i < len(c.RTMRs) {
				got = c.RTMRs[i]
			}
			checks = append(checks, check{fmt.Sprintf("rtmr%d", i), []string{r}, got})
		}
	}
	if len(w.MRConfigID) > 0 {
		var got attest.Hex
		if c.TD != nil {
			got = c.TD.MRConfigID
		}
		checks = append(checks, check{"mr_config_id", w.MRConfigID, got})
	}
	for _, ch := range checks {
		if len(ch.allowed) > 0 && !slices.ContainsFunc(ch.allowed, func(a string) bool { return hexEqual(a, ch.got) }) {
			if ch.got == nil {
				return fmt.Errorf("the evidence carries no %s", ch.name)
			}
			return fmt.Errorf("%s %s is not the one allowed", ch.name, ch.got)
		}
	}
	if w.ISVProdID != nil && (c.ISVProdID == nil || *c.ISVProdID != *w.ISVProdID) {
		return fmt.Errorf("isv_prod_id %s is not %d", optional(c.ISVProdID), *w.ISVProdID)
	}
	if w.MinISVSVN != nil && (c.ISVSVN == nil || *c.ISVSVN < *w.MinISVSVN) {
		return fmt.Errorf("isv_svn %s is below %d", optional(c.ISVSVN), *w.MinISVSVN)
	}
	if c.Debug && !w.AllowDebug {
		return fmt.Errorf("debug %s are not allowed (allow_debug = false)", map[bool]string{false: "enclaves", true: "TDs"}[c.TEE == attest.TDX])
	}
	status, why := c.TCBStatus, ""
	if w.TEE == string(attest.SNP) {
		var err error
		if status, why, err = w.admitsSNP(c); err != nil {
			return err
		}
	}
	if !slices.Contains(w.AcceptTCB, status) {
		if why != "" {
			why = ": " + why
		}
		return fmt.Errorf("TCB status %s is not accepted (accept_tcb = %q)%s", status, w.AcceptTCB, why)
	}
	if err := w.TCBPolicy.admits(c); err != nil {
		return err
	}
	return w.TDHardening.admits(c)
}

// check reads min_tcb_date.
func (p *TCBPolicy) check() error {
	if p.MinTCBDate == "" {
		return nil
	}
	for _, layout := range []string{time.DateOnly, time.RFC3339} {
		if t, err := time.Parse(layout, p.MinTCBDate); err == nil {
			p.minTCBDate = t
			return nil
		}
	}
	return fmt.Errorf("min_tcb_date %q is neither a date (2024-03-13) nor an RFC 3339 time", p.MinTCBDate)
}

// admits checks the TCB date, evaluation data number and advisories of the claims.
func (p *TCBPolicy) admits(c *attest.Claims) error {
	if !p.minTCBDate.IsZero() {
		if c.TCBDate == nil {
			return fmt.Errorf("the evidence has no TCB date (min_tcb_date = %s)", p.MinTCBDate)
		}
		if c.TCBDate.Before(p.minTCBDate) {
			return fmt.Errorf("TCB date %s is before %s (min_tcb_date)", c.TCBDate.Format(time.DateOnly), p.MinTCBDate)
		}
	}
	if n := p.MinTCBEvaluationDataNumber; n > 0 && c.TCBEvaluationDataNumber < n {
		return fmt.Errorf("TCB evaluation data number %d is below %d (min_tcb_evaluation_data_number)", c.TCBEvaluationDataNumber, n)
	}
	for _, id := range c.AdvisoryIDs {
		if slices.ContainsFunc(p.DenyAdvisories, func(d string) bool { return strings.EqualFold(d, id) }) {
			return fmt.Errorf("advisory %s applies (deny_advisories)", id)
		}
		if len(p.AllowAdvisories) > 0 && !slices.ContainsFunc(p.AllowAdvisories, func(a string) bool { return strings.EqualFold(a, id) }) {
			return fmt.Errorf("advisory %s applies and is not in allow_advisories", id)
		}
	}
	return nil
}

// admits checks a trust domain's attributes and service TDs; other evidence has none.
func (h *TDHardening) admits(c *attest.Claims) error {
	td := c.TD
	if c.TEE != attest.TDX {
		return nil
	}
	if td == nil {
		return errors.New("the TDX evidence does not describe the TD")
	}
	if !td.Attributes.SEPTVEDisable && !h.AllowSEPTVE {
		return errors.New("the TD does not set SEPT_VE_DISABLE (allow_sept_ve = false)")
	}
	if td.MRServiceTD != nil && !bytes.Equal(td.MRServiceTD, make([]byte, len(td.MRServiceTD))) &&
		!slices.ContainsFunc(h.MRServiceTD, func(a string) bool { return hexEqual(a, td.MRServiceTD) }) {
		return fmt.Errorf("mr_service_td %s is not zero nor one allowed", td.MRServiceTD)
	}
	return nil
}

func hexEqual(want string, got []byte) bool {
	b, err := hex.DecodeString(want)
	return err == nil && bytes.Equal(b, got)
}

func optional(v *uint16) string {
	if v == nil {
		return "(none)"
	}
	return fmt.Sprint(*v)
}

// Policy is the list of workloads, in order; anything none of them admits is denied.
type Policy []Workload

// Admit returns the first workload that admits the claims, or an error giving every workload's
// reason for refusing them. A workload that requires GPUs refuses them: AdmitWithGPUs (gpu.go)
// checks GPU evidence too.
func (p Policy) Admit(c *attest.Claims) (*Workload, error) {
	w, _, err := p.AdmitWithGPUs(c, nil, nil)
	return w, err
}
