package testfiles

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TDXSet is one of the TDX verification sets of testdata/attestation/README.md: a quote, the
// time it is verified at, and the status Intel's rules give (or the error, for a quote that must
// not verify).
type TDXSet struct {
	Name  string
	Quote string    // path under Attestation
	At    time.Time // the README's "verify as of"
	// Status is the expected TCB status, or "" where NotSupported says the platform is below
	// every TCB level.
	Status       string
	NotSupported bool
	Advisories   []string
	CRLs         bool // the set's collateral has CRLs current at At
	Debug        bool
	collateral   func(t testing.TB, dir string)
}

// TDXSets lists TDX-1 to TDX-11.
func TDXSets() []TDXSet {
	oasis := func(tcb, qe string) func(testing.TB, string) {
		return func(t testing.TB, dir string) { CollateralDir(t, dir, tcb, qe) }
	}
	google := func(t testing.TB, dir string) {
		CollateralDir(t, dir, "tdx/go-tdx-guest/sample_tcbInfo_response", "tdx/go-tdx-guest/sample_qeIdentity_response")
		write(t, dir, "pck-crl.der", Read(t, filepath.Join(Attestation, "tdx/go-tdx-guest/pckcrl")))
		write(t, dir, "root-ca-crl.der", Read(t, filepath.Join(Attestation, "tdx/go-tdx-guest/rootcrl.der")))
		write(t, dir, "pck-crl-issuer-chain.pem", pckCAChain(t, "tdx/trustee/tdx_quote_4.dat"))
	}
	phala := func(name string) func(testing.TB, string) {
		return func(t testing.TB, dir string) { phalaDir(t, dir, name) }
	}
	const outdated = "tdx/phala-dcap-qvl/tdx_quote_outdated_collateral.json"
	tdx7 := func(t testing.TB, dir string) {
		phalaDir(t, dir, outdated)
		write(t, dir, "tcb-info.json", Read(t, filepath.Join(Attestation, "tdx/go-tdx-guest/sample_tcbinfo_response_v5")))
	}
	unix := func(s int64) time.Time { return time.Unix(s, 0) }
	return []TDXSet{
		{Name: "TDX-1", Quote: "tdx/oasis-core/quote_v4_tdx_ecdsa_p256.bin", At: unix(1725263032), Status: "UpToDate",
			collateral: oasis("tdx/oasis-core/tcb_info_v3_tdx_fmspc_C0806F000000.json", "tdx/oasis-core/qe_identity_v2_tdx2.json")},
		{Name: "TDX-2", Quote: "tdx/oasis-core/quote_v4_tdx_ecdsa_p256_trailing.bin", At: unix(1726917140), Status: "UpToDate",
			collateral: oasis("tdx/oasis-core/tcb_info_v3_tdx_fmspc_C0806F000000.json", "tdx/oasis-core/qe_identity_v2_tdx2.json")},
		{Name: "TDX-3", Quote: "tdx/oasis-core/quote_v4_tdx_ecdsa_p256_out_of_date.bin", At: unix(1687091776), NotSupported: true,
			collateral: oasis("tdx/oasis-core/tcb_info_v3_tdx_fmspc_50806F000000.json", "tdx/oasis-core/qe_identity_v2_tdx.json")},
		{Name: "TDX-4", Quote: "tdx/go-tdx-guest/tdx_prod_quote_SPR_E4.dat", At: unix(1688173200), NotSupported: true, CRLs: true, collateral: google},
		{Name: "TDX-5", Quote: "tdx/trustee/tdx_quote_4.dat", At: unix(1688173200), Status: "UpToDate", CRLs: true, Debug: true, collateral: google},
		{Name: "TDX-6", Quote: "tdx/openenclave/tdx_quote.bin", At: unix(1688173200), Status: "UpToDate", CRLs: true, collateral: google},
		{Name: "TDX-7", Quote: "tdx/go-tdx-guest/quote_v5_sample.dat", At: unix(1771497735), Status: "UpToDate", CRLs: true, collateral: tdx7},
		{Name: "TDX-8", Quote: "tdx/phala-dcap-qvl/tdx_quote", At: unix(1750415547), Status: "UpToDate", CRLs: true,
			collateral: phala("tdx/phala-dcap-qvl/tdx_quote_collateral.json")},
		{Name: "TDX-9", Quote: "tdx/phala-dcap-qvl/tdx_quote_outdated", At: unix(1771498731), NotSupported: true, CRLs: true, collateral: phala(outdated)},
		{Name: "TDX-10", Quote: "tdx/trustee/tdx_quote_5.dat", At: unix(1771498731), NotSupported: true, CRLs: true, collateral: phala(outdated)},
		{Name: "TDX-11", Quote: "tdx/openenclave/tdx_quote-moduleupdate-seamldr5.dat", At: unix(1740652640), Status: "TDRelaunchAdvised",
			Advisories: []string{"INTEL-SA-01036", "INTEL-SA-01099"}, CRLs: true, collateral: openEnclaveDir},
	}
}

// CollateralDir writes the set's collateral folder at dir (which it makes) and returns dir.
func (s *TDXSet) CollateralDir(t testing.TB, dir string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s.collateral(t, dir)
	return dir
}

// ReadQuote returns the set's quote.
func (s *TDXSet) ReadQuote(t testing.TB) []byte {
	return Read(t, filepath.Join(Attestation, s.Quote))
}

func write(t testing.TB, dir, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// pckCAChain returns the PEM certificates after the first (the PCK leaf) in a quote's PCK chain.
func pckCAChain(t testing.TB, quote string) []byte {
	b := Read(t, filepath.Join(Attestation, quote))
	begin, end := []byte("-----BEGIN CERTIFICATE-----"), []byte("-----END CERTIFICATE-----\n")
	first := bytes.Index(b, begin)
	second := first + len(begin) + bytes.Index(b[first+len(begin):], begin)
	last := bytes.LastIndex(b, end) + len(end)
	if first < 0 || second < first+len(begin) || last < second {
		t.Fatalf("%s: no PCK chain", quote)
	}
	return b[second:last]
}

// phalaDir writes a collateral folder from one of dcap-qvl's JSON bundles: PEM chains, hex DER
// CRLs, and the signed JSON objects as strings with their hex signatures.
func phalaDir(t testing.TB, dir, name string) {
	t.Helper()
	var j struct {
		PCKCRLIssuerChain  string `json:"pck_crl_issuer_chain"`
		RootCACRL          string `json:"root_ca_crl"`
		PCKCRL             string `json:"pck_crl"`
		TCBInfoIssuerChain string `json:"tcb_info_issuer_chain"`
		TCBInfo            string `json:"tcb_info"`
		TCBInfoSignature   string `json:"tcb_info_signature"`
		QEIssuerChain      string `json:"qe_identity_issuer_chain"`
		QEIdentity         string `json:"qe_identity"`
		QEIdentitySig      string `json:"qe_identity_signature"`
	}
	if err := json.Unmarshal(Read(t, filepath.Join(Attestation, name)), &j); err != nil {
		t.Fatal(err)
	}
	for file, data := range map[string][]byte{
		"tcb-info.json":                []byte(`{"tcbInfo":` + j.TCBInfo + `,"signature":"` + j.TCBInfoSignature + `"}`),
		"tcb-info-issuer-chain.pem":    []byte(j.TCBInfoIssuerChain),
		"qe-identity.json":             []byte(`{"enclaveIdentity":` + j.QEIdentity + `,"signature":"` + j.QEIdentitySig + `"}`),
		"qe-identity-issuer-chain.pem": []byte(j.QEIssuerChain),
		"pck-crl.der":                  unhex(t, j.PCKCRL),
		"pck-crl-issuer-chain.pem":     []byte(j.PCKCRLIssuerChain),
		"root-ca-crl.der":              unhex(t, j.RootCACRL),
	} {
		write(t, dir, file, data)
	}
}

// openEnclaveDir writes the collateral folder of TDX-11 from Open Enclave's dump of Intel's
// sgx_ql_qve_collateral_t: version and TEE type (u32 each), seven {pointer, size} pairs (u64
// each), then the seven NUL-terminated pieces from offset 120, the CRLs as hex text.
func openEnclaveDir(t testing.TB, dir string) {
	t.Helper()
	b := Read(t, filepath.Join(Attestation, "tdx/openenclave/tdx_endorsement.bin"))
	files := []string{"pck-crl-issuer-chain.pem", "root-ca-crl.der", "pck-crl.der", "tcb-info-issuer-chain.pem", "tcb-info.json", "qe-identity-issuer-chain.pem", "qe-identity.json"}
	off := 120
	for i, file := range files {
		size := int(binary.LittleEndian.Uint64(b[8+16*i+8:]))
		piece := bytes.TrimRight(b[off:off+size], "\x00")
		off += size
		if file == "root-ca-crl.der" || file == "pck-crl.der" {
			piece = unhex(t, string(piece))
		}
		write(t, dir, file, piece)
	}
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
