// Package trust builds the verifiers a relying party trusts from its settings: simulated
// platforms, Intel's collateral for SGX enclaves and TDX trust domains, AMD's roots for SEV-SNP
// guests. The provisioning server (its configuration file) and `ppml quote verify` (its flags)
// both describe what they trust with Settings, so that both verify evidence the same way.
package trust

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ppml/ppml/attest"
	"github.com/ppml/ppml/attest/sgx"
	"github.com/ppml/ppml/attest/sim"
	"github.com/ppml/ppml/attest/snp"
	"github.com/ppml/ppml/attest/tdx"
	"github.com/ppml/ppml/collateral"
)

// Settings say which roots of trust vouch for evidence. Their TOML keys are those of the
// server's configuration file; paths are used as they are (the caller resolves them).
type Settings struct {
	// SimPlatforms are folders of simulated platforms to trust (development).
	SimPlatforms []string `toml:"sim_platforms"`
	// Collateral is where the collateral of genuine SGX and TDX platforms comes from: a folder
	// of Intel PCS responses, or the https URL of Intel's PCS or a PCCS, fetched through ppml's
	// cache (see docs/collateral.md). Without it only simulated SGX platforms can attest.
	Collateral string `toml:"collateral"`
	// SkipCRL accepts evidence whose revocation cannot be checked (collateral without CRLs, no
	// AMD CRL of an SEV-SNP report's product line).
	SkipCRL bool `toml:"skip_crl"`
	// TDXCollateral, if given, is where the collateral of TDX platforms comes from instead of
	// Collateral, as Collateral names it: for SGX and TDX platforms with folders of their own
	// (one folder holds one QE identity: QE for SGX, TD_QE for TDX).
	TDXCollateral string `toml:"tdx_collateral"`
	// SNP lets SEV-SNP guests attest, trusting AMD's roots, with the VCEK or VLEK certificates
	// their evidence carries or SNPCertificates (PEM or DER files, as AMD's KDS serves them).
	SNP             bool     `toml:"snp"`
	SNPCertificates []string `toml:"snp_certificates"`
	// SNPCRL is a folder of AMD's CRLs, one file per product line (and key: VCEK, VLEK) as AMD's
	// KDS serves them (https://kdsintf.amd.com/vcek/v1/{Milan,Genoa,Turin}/crl, DER), each signed
	// by the ARK of its line. Without a CRL of a report's product line the report is refused,
	// unless SkipCRL.
	SNPCRL string `toml:"snp_crl"`
}

// Registry returns the verifiers the settings trust, one per kind of evidence. Evidence is tried
// against the simulated platforms of its kind first, whose refusal of genuine evidence is cheap
// and certain, then against Intel's or AMD's roots.
func (s *Settings) Registry() (attest.Registry, error) {
	verifiers := map[attest.Kind]attest.AnyOf{}
	add := func(v attest.Verifier) { verifiers[v.Kind()] = append(verifiers[v.Kind()], v) }
	for _, dir := range s.SimPlatforms {
		v, err := sim.LoadVerifier(dir)
		if err != nil {
			return nil, err
		}
		add(v)
	}
	var tdxSource collateral.Source
	if s.Collateral != "" {
		source, err := collateral.OpenSource(s.Collateral)
		if err != nil {
			return nil, err
		}
		add(&sgx.IntelVerifier{Source: source, SkipCRL: s.SkipCRL})
		tdxSource = source
	}
	if s.TDXCollateral != "" {
		source, err := collateral.OpenSource(s.TDXCollateral)
		if err != nil {
			return nil, err
		}
		tdxSource = source
	}
	if tdxSource != nil {
		add(tdx.NewIntelVerifier(tdxSource, s.SkipCRL))
	}
	if s.SNP {
		var certs [][]byte
		for _, name := range s.SNPCertificates {
			b, err := os.ReadFile(name)
			if err != nil {
				return nil, err
			}
			certs = append(certs, b)
		}
		crls, err := readCRLs(s.SNPCRL)
		if err != nil {
			return nil, err
		}
		v, err := snp.NewVerifier(snp.Options{Certificates: certs, CRLs: crls, SkipCRL: s.SkipCRL})
		if err != nil {
			return nil, err
		}
		add(v)
	}
	r := attest.Registry{}
	for kind, vs := range verifiers {
		r[kind] = vs
	}
	return r, nil
}

// readCRLs reads every file of the folder dir but those whose name starts with a dot, by path;
// none if dir is "".
func readCRLs(dir string) (map[string][]byte, error) {
	if dir == "" {
		return nil, nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("snp_crl: %w", err)
	}
	crls := map[string][]byte{}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") || !e.Type().IsRegular() {
			continue
		}
		name := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("snp_crl: %w", err)
		}
		crls[name] = b
	}
	if len(crls) == 0 {
		return nil, fmt.Errorf("snp_crl: %s holds no CRL: put in it the CRL files that AMD's KDS serves", dir)
	}
	return crls, nil
}
