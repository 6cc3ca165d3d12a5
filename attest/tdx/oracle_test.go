package tdx

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-tdx-guest/abi"
	"github.com/google/go-tdx-guest/pcs"
	pb "github.com/google/go-tdx-guest/proto/tdx"
	"github.com/google/go-tdx-guest/verify"

	"github.com/ppml/ppml/attest/sgx"
	"github.com/ppml/ppml/collateral"
	"github.com/ppml/ppml/internal/testfiles"
)

// TestOracleMeasurements checks that ppml's parser reads every field of every TDX quote of
// testdata as go-tdx-guest does, where go-tdx-guest reads the quote (version 4).
func TestOracleMeasurements(t *testing.T) {
	compared := 0
	for _, s := range testfiles.TDXSets() {
		quote := s.ReadQuote(t)
		theirs, err := oracleParse(quote)
		if binary.LittleEndian.Uint16(quote) != 4 {
			if err == nil {
				t.Errorf("%s: go-tdx-guest now reads version 5: compare it too", s.Name)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: go-tdx-guest: %v", s.Name, err)
		}
		ours, err := sgx.ParseQuote(quote)
		if err != nil {
			t.Fatalf("%s: %v", s.Name, err)
		}
		b, td := theirs.GetTdQuoteBody(), ours.TD
		cert := theirs.GetSignedData().GetCertificationData().GetQeReportCertificationData()
		for _, f := range []struct {
			name         string
			theirs, ours []byte
		}{
			{"TEE_TCB_SVN", b.GetTeeTcbSvn(), td.TEETCBSVN[:]},
			{"MRSEAM", b.GetMrSeam(), td.MRSEAM[:]},
			{"MRSIGNERSEAM", b.GetMrSignerSeam(), td.MRSignerSEAM[:]},
			{"SEAMATTRIBUTES", b.GetSeamAttributes(), td.SEAMAttributes[:]},
			{"TD_ATTRIBUTES", b.GetTdAttributes(), td.TDAttributes[:]},
			{"XFAM", b.GetXfam(), td.XFAM[:]},
			{"MRTD", b.GetMrTd(), td.MRTD[:]},
			{"MRCONFIGID", b.GetMrConfigId(), td.MRConfigID[:]},
			{"MROWNER", b.GetMrOwner(), td.MROwner[:]},
			{"MROWNERCONFIG", b.GetMrOwnerConfig(), td.MROwnerConfig[:]},
			{"RTMRs", bytes.Join(b.GetRtmrs(), nil), bytes.Join([][]byte{td.RTMRs[0][:], td.RTMRs[1][:], td.RTMRs[2][:], td.RTMRs[3][:]}, nil)},
			{"REPORTDATA", b.GetReportData(), td.ReportData[:]},
			{"signature", theirs.GetSignedData().GetSignature(), ours.Signature[:]},
			{"attestation key", theirs.GetSignedData().GetEcdsaAttestationKey(), ours.AttestationKey[:]},
			{"QE report", cert.GetQeReport().GetMrSigner(), ours.QEReport.MRSigner[:]},
			{"QE report signature", cert.GetQeReportSignature(), ours.QEReportSignature[:]},
			{"QE auth data", cert.GetQeAuthData().GetData(), ours.QEAuthData},
			{"PCK chain", cert.GetPckCertificateChainData().GetPckCertChain(), ours.PCKChain},
		} {
			if !bytes.Equal(f.theirs, f.ours) {
				t.Errorf("%s: %s: go-tdx-guest %x, ppml %x", s.Name, f.name, f.theirs, f.ours)
			}
		}
		compared++
	}
	if compared < 5 {
		t.Fatalf("compared %d quotes", compared)
	}
}

// TestOracleStatus verifies each version 4 set with go-tdx-guest too: it accepts a quote only if
// every TCB level is UpToDate, so ppml must verify what it accepts as UpToDate, and refuse or
// report below UpToDate what it refuses.
func TestOracleStatus(t *testing.T) {
	// go-tdx-guest v0.3.1 compares the FMSPC case-sensitively, and TDX-8's TCB info spells it in
	// upper case: it refuses a genuine quote there.
	const fmspcCase = "is not equal to FMSPC value from Intel PCS's reported TDX TCB info"
	agreed := 0
	for _, s := range testfiles.TDXSets() {
		quote := s.ReadQuote(t)
		if binary.LittleEndian.Uint16(quote) != 4 {
			continue
		}
		_, b := set(t, s.Name)
		theirErr := oracleVerify(t, quote, b, s)
		c, ourErr := newVerifier(t, b, !s.CRLs).Verify(context.Background(), quote, s.At)
		switch {
		case theirErr != nil && strings.Contains(theirErr.Error(), fmspcCase):
			t.Logf("%s: go-tdx-guest's FMSPC case limitation: %v", s.Name, theirErr)
			continue
		case theirErr == nil && (ourErr != nil || c.TCBStatus != sgx.StatusUpToDate):
			t.Errorf("%s: go-tdx-guest accepts it, ppml says %v %v", s.Name, c, ourErr)
		case theirErr != nil && ourErr == nil && c.TCBStatus == sgx.StatusUpToDate:
			t.Errorf("%s: go-tdx-guest refuses it (%v), ppml says UpToDate", s.Name, theirErr)
		}
		t.Logf("%s: go-tdx-guest %v; ppml %v", s.Name, theirErr, ourErr)
		agreed++
	}
	if agreed < 5 {
		t.Fatalf("compared %d verdicts", agreed)
	}
}

// oracleParse parses a quote with go-tdx-guest, whose v0.3.1 panics on some malformed quotes.
func oracleParse(quote []byte) (q *pb.QuoteV4, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("go-tdx-guest panicked: %v", r)
		}
	}()
	p, err := abi.QuoteToProto(quote)
	if err != nil {
		return nil, err
	}
	q, ok := p.(*pb.QuoteV4)
	if !ok {
		return nil, fmt.Errorf("not a version 4 quote")
	}
	return q, nil
}

// oracleVerify verifies a quote with go-tdx-guest against b, served as Intel's PCS would.
func oracleVerify(t *testing.T, quote []byte, b *collateral.Bundle, s testfiles.TDXSet) error {
	q, err := oracleParse(quote)
	if err != nil {
		return err
	}
	tcb, err := sgx.ParseTCBInfo(b.TCBInfo)
	if err != nil {
		t.Fatal(err)
	}
	server := &bundleServer{fmspc: strings.ToLower(fmt.Sprintf("%X", tcb.FMSPC)), b: b}
	return verify.TdxQuote(q, &verify.Options{CheckRevocations: s.CRLs, GetCollateral: true, Getter: server, Now: s.At, TrustedRoots: sgx.IntelRoots()})
}

// bundleServer answers go-tdx-guest's requests to Intel's PCS from a collateral bundle: the TCB
// info, QE identity and CRLs by URL, each issuer chain, URL-encoded, in a response header.
type bundleServer struct {
	fmspc string
	b     *collateral.Bundle
}

// Get implements go-tdx-guest's trust.HTTPSGetter.
func (s *bundleServer) Get(u string) (map[string][]string, []byte, error) {
	header := func(name string, chain []byte) map[string][]string {
		return map[string][]string{name: {url.QueryEscape(string(normalizePEM(chain)))}}
	}
	rootCRLs := func() []string {
		block, _ := pem.Decode(s.b.TCBInfoIssuerChain[bytes.Index(s.b.TCBInfoIssuerChain, []byte("-----END")):])
		if block == nil {
			return nil
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil
		}
		return c.CRLDistributionPoints
	}
	switch {
	case u == pcs.TcbInfoURL(s.fmspc):
		return header("Tcb-Info-Issuer-Chain", s.b.TCBInfoIssuerChain), s.b.TCBInfo, nil
	case u == pcs.QeIdentityURL():
		return header("Sgx-Enclave-Identity-Issuer-Chain", s.b.QEIdentityIssuerChain), s.b.QEIdentity, nil
	case u == pcs.PckCrlURL("platform") || u == pcs.PckCrlURL("processor"):
		return header("Sgx-Pck-Crl-Issuer-Chain", s.b.PCKCRLIssuerChain), s.b.PCKCRL, nil
	case slices.Contains(rootCRLs(), u):
		return nil, s.b.RootCACRL, nil
	}
	return nil, nil, fmt.Errorf("the collateral has nothing for %s", u)
}

// normalizePEM re-encodes PEM certificates without anything between them, as go-tdx-guest wants.
func normalizePEM(chain []byte) []byte {
	var out []byte
	for rest := chain; ; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			return out
		}
		out = append(out, pem.EncodeToMemory(block)...)
	}
}
