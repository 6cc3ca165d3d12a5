package sim

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/big"
	"time"

	"github.com/ppml/ppml/attest"
	"github.com/ppml/ppml/attest/sgx"
	"github.com/ppml/ppml/manifest"
)

// Enclave is the identity a simulated quote reports, in the fields of an SGX report body.
type Enclave struct {
	MREnclave [32]byte
	MRSigner  [32]byte
	ISVProdID uint16
	ISVSVN    uint16
	Debug     bool
}

// WorkloadEnclave returns the identity that a workload run from m reports on a simulated
// platform: MRENCLAVE is m's measurement (manifest.Measure); MRSIGNER is the signer's of sig, the
// manifest's signature, or zero when sig is nil; ISV_PROD_ID, ISV_SVN and the debug flag are the
// manifest's.
func WorkloadEnclave(m *manifest.Manifest, sig *manifest.Signature) Enclave {
	e := Enclave{MREnclave: manifest.Measure(m), ISVProdID: m.ISVProdID, ISVSVN: m.ISVSVN, Debug: m.Debug}
	if sig != nil {
		e.MRSigner = sig.MRSigner()
	}
	return e
}

// qeAuthData is the simulated Quoting Enclave's authentication data.
var qeAuthData = []byte("ppml simulated QE authentication")

// Quote writes a DCAP v3 quote, signed by the platform's attestation key and certified by its
// PCK certificate, for enclave with reportData.
func (p *Platform) Quote(enclave Enclave, reportData [64]byte) ([]byte, error) {
	if p.Settings.isTDX() {
		return nil, fmt.Errorf("simulated platform %s is a TDX platform: it quotes its trust domain, not enclaves", p.Dir)
	}
	flags := uint64(sgx.AttrInit | sgx.AttrMode64Bit)
	if enclave.Debug {
		flags |= sgx.AttrDebug
	}
	body := sgx.ReportBody{
		MREnclave: enclave.MREnclave, MRSigner: enclave.MRSigner,
		ISVProdID: enclave.ISVProdID, ISVSVN: enclave.ISVSVN, ReportData: reportData,
	}
	binary.LittleEndian.PutUint64(body.Attributes[:8], flags)
	binary.LittleEndian.PutUint64(body.Attributes[8:], 0x3) // XFRM: x87 and SSE
	return p.sign(&sgx.Quote{Header: sgx.Header{Version: 3}, BodyType: sgx.BodySGX, Body: body})
}

// bodySizes are the sizes of the report bodies of DCAP quotes.
var bodySizes = map[uint16]int{sgx.BodySGX: 384, sgx.BodyTD10: 584, sgx.BodyTD15: 648}

// sign completes q, whose header names its version and TEE type and whose body is set, as the
// platform's Quoting Enclave writes its quotes: the rest of the header, the QE report and its
// signature by the PCK key, the PCK chain; then it signs the header (and version 5's body
// descriptor) and body with the attestation key and returns the quote's bytes.
func (p *Platform) sign(q *sgx.Quote) ([]byte, error) {
	q.Header.AttestationKeyType, q.Header.QESVN, q.Header.PCESVN = 2, qeSVN, platformPCESVN
	q.Header.QEVendorID = intelQEVendorID
	qeID := sha256.Sum256(p.pck.Raw)
	copy(q.Header.UserData[:], qeID[:16])
	q.QEAuthData, q.PCKChain = qeAuthData, pemChain(p.pck, p.pckCA, p.root)
	q.AttestationKey, q.QEReport, q.QEReportSignature = p.attestationKeyBytes(), p.qeReport(), p.qeReportSignature
	b := q.Marshal()
	signed := len(q.Header.Marshal()) + bodySizes[q.BodyType]
	if q.Header.Version == 5 {
		signed += 6 // body type u16, body size u32
	}
	sig, err := signRaw(p.attestationKey, b[:signed])
	if err != nil {
		return nil, err
	}
	copy(b[signed+4:], sig) // after the signature data's length
	return b, nil
}

// attestationKeyBytes returns the attestation key as quotes carry it: X ‖ Y.
func (p *Platform) attestationKeyBytes() [64]byte {
	var b [64]byte
	p.attestationKey.X.FillBytes(b[:32])
	p.attestationKey.Y.FillBytes(b[32:])
	return b
}

// qeReport returns the simulated Quoting Enclave's report, which binds the attestation key: its
// report data is SHA-256(key ‖ auth data).
func (p *Platform) qeReport() sgx.ReportBody {
	r := sgx.ReportBody{MRSigner: qeMRSigner, ISVProdID: p.qeProdID(), ISVSVN: qeSVN}
	r.Attributes[0] = sgx.AttrInit | sgx.AttrProvKey
	ak := p.attestationKeyBytes()
	binding := sha256.Sum256(append(ak[:], qeAuthData...))
	copy(r.ReportData[:], binding[:])
	return r
}

// qeProdID is the Quoting Enclave's ISV_PROD_ID: 1 for SGX's QE, 2 for TDX's TD_QE.
func (p *Platform) qeProdID() uint16 {
	if p.Settings.isTDX() {
		return 2
	}
	return 1
}

// certifyAttestationKey signs the QE report with the PCK key, as Intel's PCE does once when the
// Quoting Enclave makes its attestation key: every quote then carries the same report and
// signature.
func (p *Platform) certifyAttestationKey() error {
	r := p.qeReport()
	sig, err := signRaw(p.pckKey, r.Marshal())
	if err != nil {
		return err
	}
	copy(p.qeReportSignature[:], sig)
	return nil
}

// attestationKeyCertified reports whether the QE report signature is the PCK certificate's key's
// signature of the QE report, as a verifier will check.
func (p *Platform) attestationKeyCertified() bool {
	pub, ok := p.pck.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return false
	}
	r := p.qeReport()
	digest := sha256.Sum256(r.Marshal())
	sig := p.qeReportSignature[:]
	return ecdsa.Verify(pub, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:]))
}

// Attester is the simulated Quoting Enclave of a platform, attesting to one enclave.
type Attester struct {
	Platform *Platform
	Enclave  Enclave
}

// Kind returns attest.SGX: simulated quotes are SGX quotes.
func (a Attester) Kind() attest.Kind { return attest.SGX }

// Attest returns a quote for the enclave binding reportData.
func (a Attester) Attest(reportData attest.ReportData) ([]byte, error) {
	return a.Platform.Quote(a.Enclave, reportData)
}

// verifier is an attest.Verifier of the quotes of one simulated platform.
type verifier struct{ v *sgx.Verifier }

// Kind returns attest.SGX.
func (verifier) Kind() attest.Kind { return attest.SGX }

// Verify verifies a simulated quote at time at and returns its claims.
func (s verifier) Verify(_ context.Context, quote []byte, at time.Time) (*attest.Claims, error) {
	v, err := s.v.Verify(quote, at)
	if err != nil {
		return nil, err
	}
	return v.Claims(attest.Simulated), nil
}
