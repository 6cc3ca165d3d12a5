package snp

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/verify/trust"
)

// Revocation. AMD's Key Distribution Service serves a CRL per product line, signed by the line's
// ARK (https://kdsintf.amd.com/vcek/v1/{Milan,Genoa,Turin}/crl, and .../vlek/v1/.../crl). An
// ARK's CRL lists the certificates the ARK issued: the ASK, which signs VCEKs, and the ASVK,
// which signs VLEKs. AMD supersedes a VCEK or VLEK by TCB rather than revoking it; a revoked ASK
// or ASVK revokes every VCEK or VLEK under it.

// revocationList is a CRL of AMD's, with the product line whose ARK signed it.
type revocationList struct {
	line string
	list *x509.RevocationList
}

// parseCRLs parses the CRLs (DER, as the KDS serves them, or PEM), by the names errors give them,
// and finds, for each, the product line of roots whose ARK signed it.
func parseCRLs(crls map[string][]byte, roots map[string][]*trust.AMDRootCerts) ([]revocationList, error) {
	var out []revocationList
	for _, name := range slices.Sorted(maps.Keys(crls)) {
		b := crls[name]
		if block, _ := pem.Decode(b); block != nil && block.Type == "X509 CRL" {
			b = block.Bytes
		}
		list, err := x509.ParseRevocationList(b)
		if err != nil {
			return nil, fmt.Errorf("AMD CRL %s: %w", name, err)
		}
		line := arkOf(list, roots)
		if line == "" {
			return nil, fmt.Errorf("AMD CRL %s (issuer %q) is not signed by the ARK of any trusted product line: give the CRL files that AMD's KDS serves for Milan, Genoa or Turin", name, list.Issuer.CommonName)
		}
		out = append(out, revocationList{line, list})
	}
	return out, nil
}

// arkOf returns the product line whose ARK signed list, "" if none.
func arkOf(list *x509.RevocationList, roots map[string][]*trust.AMDRootCerts) string {
	for line, rs := range roots {
		for _, r := range rs {
			if r.ProductCerts != nil && r.ProductCerts.Ark != nil && list.CheckSignatureFrom(r.ProductCerts.Ark) == nil {
				return line
			}
		}
	}
	return ""
}

// Revocation states, as SNPClaims.Revocation says them.
const (
	RevocationGood      = "good"      // the product line's CRLs, current at the verification time, list neither signer
	RevocationUnchecked = "unchecked" // no CRL of the product line, and Options.SkipCRL
)

// checkRevocation checks that the ASK or ASVK of product line that signed endorsement (the VCEK
// or VLEK, of kind key) is not on the line's CRLs, each current at at. It returns the revocation
// state.
func (v *Verifier) checkRevocation(line string, key abi.ReportSigner, endorsement *x509.Certificate, at time.Time) (string, error) {
	signer := v.signerOf(line, key, endorsement)
	if signer == nil {
		return "", fmt.Errorf("no trusted %s of %s signed the %v", signerRole(key), line, key)
	}
	var lists []*x509.RevocationList
	for _, l := range v.crls {
		if l.line == line {
			lists = append(lists, l.list)
		}
	}
	if len(lists) == 0 {
		if v.skipCRL {
			return RevocationUnchecked, nil
		}
		return "", fmt.Errorf("no AMD CRL of %s, so the revocation of its %s cannot be checked: add the one AMD serves at https://kdsintf.amd.com/vcek/v1/%[1]s/crl to snp_crl (--snp-crl), or accept unchecked revocation with skip_crl (--skip-crl)", line, signerRole(key))
	}
	for _, l := range lists {
		if at.Before(l.ThisUpdate) || l.NextUpdate.IsZero() || !at.Before(l.NextUpdate) {
			return "", fmt.Errorf("the AMD CRL of %s (issued %s, next update %s) is not current at %s: fetch the current one from AMD's KDS",
				line, l.ThisUpdate.Format(time.RFC3339), l.NextUpdate.Format(time.RFC3339), at.UTC().Format(time.RFC3339))
		}
		for _, r := range l.RevokedCertificateEntries {
			if r.SerialNumber.Cmp(signer.SerialNumber) == 0 {
				return "", fmt.Errorf("the %s of %s that signed the %v (serial %x) is revoked by AMD's CRL since %s",
					signerRole(key), line, key, signer.SerialNumber, r.RevocationTime.UTC().Format(time.RFC3339))
			}
		}
	}
	return RevocationGood, nil
}

// signerOf returns the trusted ASK (for a VCEK) or ASVK (for a VLEK) of product line that signed
// endorsement, nil if none.
func (v *Verifier) signerOf(line string, key abi.ReportSigner, endorsement *x509.Certificate) *x509.Certificate {
	for _, r := range v.roots[line] {
		if r.ProductCerts == nil {
			continue
		}
		c := r.ProductCerts.Ask
		if key == abi.VlekReportSigner {
			c = r.ProductCerts.Asvk
		}
		if c != nil && endorsement.CheckSignatureFrom(c) == nil {
			return c
		}
	}
	return nil
}

// signerRole names the certificate that signs a key's certificate: ASK for a VCEK, ASVK for a
// VLEK.
func signerRole(key abi.ReportSigner) string {
	if key == abi.VlekReportSigner {
		return "ASVK"
	}
	return "ASK"
}
