package snp

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/google/go-configfs-tsm/configfs/configfsi"
	"github.com/google/go-configfs-tsm/configfs/faketsm"
	"github.com/google/go-sev-guest/abi"
	sevtest "github.com/google/go-sev-guest/testing"
	"github.com/google/go-sev-guest/verify/trust"

	"github.com/ppml/ppml/attest"
)

// The fake AMD Secure Processor of go-sev-guest's testing package: a test-only ARK, ASK, ASVK and
// VCEK, issued at fakeTime, that sign reports like the real ones.
var fakeTime = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

func fakeSigner(t *testing.T) *sevtest.AmdSigner {
	s, err := sevtest.DefaultTestOnlyCertChain("Milan-B1", fakeTime)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// certTable returns s's certificate table, as the host hands it over with a report.
func certTable(t *testing.T, s *sevtest.AmdSigner) []byte {
	b, err := s.CertTableBytes()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fakeVerifier trusts the fake signer's roots, with no CRL (crl_test.go checks CRLs).
func fakeVerifier(t *testing.T, s *sevtest.AmdSigner) *Verifier {
	roots := &trust.AMDRootCerts{ProductLine: "Milan", ProductCerts: &trust.ProductCerts{Ark: s.Ark, Ask: s.Ask, Asvk: s.Asvk}}
	v, err := NewVerifier(Options{Roots: map[string][]*trust.AMDRootCerts{"Milan": {roots}}, SkipCRL: true})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// signedReport returns a version 2 report of reportData, altered by alter and signed by s.
func signedReport(t *testing.T, s *sevtest.AmdSigner, reportData []byte, alter func([]byte)) []byte {
	raw := sevtest.CreateRawReport(&sevtest.TestReportOptions{ReportData: reportData})
	r := raw[:abi.ReportSize]
	alter(r)
	rs, ss, err := s.Sign(abi.SignedComponent(r))
	if err == nil {
		err = abi.SetSignature(rs, ss, r)
	}
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// checkEvidence verifies evidence with the fake roots and checks that it binds rd.
func checkEvidence(t *testing.T, s *sevtest.AmdSigner, evidence []byte, rd attest.ReportData) {
	t.Helper()
	c, err := fakeVerifier(t, s).Verify(context.Background(), evidence, fakeTime.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(c.ReportData, rd[:]) || !c.Debug {
		t.Fatalf("claims %+v, want report data %x and debug (the fake's policy)", c, rd)
	}
}

// TestQuoteProviderAttester runs the Attester over go-sev-guest's fake quote provider, which
// answers like /dev/sev-guest: a signed report and the host's certificate table.
func TestQuoteProviderAttester(t *testing.T) {
	rd := attest.ReportData{1, 2, 3}
	qp, err := sevtest.TcQuoteProvider([]sevtest.TestCase{{Input: rd, Output: sevtest.TestRawReport(rd)}},
		&sevtest.DeviceOptions{Now: fakeTime, Product: abi.DefaultSevProduct()})
	if err != nil {
		t.Fatal(err)
	}
	var a attest.Attester = NewAttester(qp)
	if a.Kind() != attest.SNP {
		t.Fatalf("kind %q", a.Kind())
	}
	evidence, err := a.Attest(rd)
	if err != nil {
		t.Fatal(err)
	}
	checkEvidence(t, qp.Device.Signer, evidence, rd)

	_, err = a.Attest(attest.ReportData{9})
	wantErr(t, err, "get SEV-SNP attestation report: test error: no response")
}

// fakeTSM is go-configfs-tsm's fake configfs-tsm answering as an SEV-SNP guest would: provider
// reads provider, outblob is a report of inblob signed by s, auxblob is s's certificate table.
func fakeTSM(t *testing.T, s *sevtest.AmdSigner, provider string) configfsi.Client {
	sub := faketsm.Report611(0)
	sub.ReadAttr = func(e *faketsm.ReportEntry, attr string) ([]byte, error) {
		switch attr {
		case "provider":
			return []byte(provider + "\n"), nil
		case "outblob":
			return signedReport(t, s, e.InAttrs["inblob"].Value, func([]byte) {}), nil
		case "auxblob":
			return s.CertTableBytes()
		}
		return nil, errors.New("unexpected attribute " + attr)
	}
	return &faketsm.Client{Subsystems: map[string]configfsi.Client{"report": sub}}
}

func TestConfigFSAttester(t *testing.T) {
	s := fakeSigner(t)
	rd := attest.ReportData{4, 5, 6}
	evidence, err := NewConfigFSAttester(fakeTSM(t, s, "sev_guest")).Attest(rd)
	if err != nil {
		t.Fatal(err)
	}
	checkEvidence(t, s, evidence, rd)

	_, err = NewConfigFSAttester(fakeTSM(t, s, "tdx_guest")).Attest(rd)
	wantErr(t, err, `reports come from "tdx_guest", not "sev_guest"`)
}

func TestOpenAttester(t *testing.T) {
	// Where the machine is no SEV-SNP guest, the error says so.
	if _, err := OpenAttester(); err != nil {
		wantErr(t, err, "neither configfs-tsm nor /dev/sev-guest")
	}
}

// TestReportAgainstCertificate checks the validate step with reports that the fake signer signs,
// so that they pass the signature check and only disagree with their certificate.
func TestReportAgainstCertificate(t *testing.T) {
	s := fakeSigner(t)
	table := certTable(t, s)
	for _, tc := range []struct {
		name  string
		alter func([]byte)
		text  string
	}{
		{"reported TCB is not the VCEK's", func(r []byte) { binary.LittleEndian.PutUint64(r[0x180:], 0x0300000000000001) },
			"check SEV-SNP report against its VCEK certificate"},
		{"committed firmware newer than current", func(r []byte) { r[0x1EC] = 5 },
			"committed build number 5 is greater than the current build number 0"},
		{"CHIP_ID is not the VCEK's", func(r []byte) { r[0x1A0] = 1 }, "is not the same as the VCEK certificate's HWID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			evidence := append(signedReport(t, s, nil, tc.alter), table...)
			_, err := fakeVerifier(t, s).Verify(context.Background(), evidence, fakeTime.Add(time.Hour))
			wantErr(t, err, tc.text)
		})
	}
}
