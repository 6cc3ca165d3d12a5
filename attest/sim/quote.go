package sim

import (
	"crypto/sha256"
	"encoding/binary"

	"github.com/ppml/ppml/attest"
	"github.com/ppml/ppml/attest/sgx"
)

// Enclave is the identity a simulated quote reports, in the fields of an SGX report body.
type Enclave struct {
	MREnclave [32]byte
	MRSigner  [32]byte
	ISVProdID uint16
	ISVSVN    uint16
	Debug     bool
}

// qeAuthData is the simulated Quoting Enclave's authentication data.
var qeAuthData = []byte("ppml simulated QE authentication")

// Quote writes a DCAP v3 quote, signed by the platform's attestation key and certified by its
// PCK certificate, for enclave with reportData.
func (p *Platform) Quote(enclave Enclave, reportData [64]byte) ([]byte, error) {
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

	q := &sgx.Quote{
		Header: sgx.Header{
			Version: 3, AttestationKeyType: 2, QESVN: qeSVN, PCESVN: platformPCESVN,
			QEVendorID: intelQEVendorID,
		},
		Body:       body,
		QEAuthData: qeAuthData,
		PCKChain:   pemChain(p.pck, p.pckCA, p.root),
	}
	qeID := sha256.Sum256(p.pck.Raw)
	copy(q.Header.UserData[:], qeID[:16])
	pub := p.attestationKey.PublicKey
	pub.X.FillBytes(q.AttestationKey[:32])
	pub.Y.FillBytes(q.AttestationKey[32:])

	// The QE report binds the attestation key: its report data is SHA-256(key ‖ auth data).
	q.QEReport = sgx.ReportBody{MRSigner: qeMRSigner, ISVProdID: 1, ISVSVN: qeSVN}
	q.QEReport.Attributes[0] = sgx.AttrInit | sgx.AttrProvKey
	binding := sha256.Sum256(append(q.AttestationKey[:], qeAuthData...))
	copy(q.QEReport.ReportData[:], binding[:])
	sig, err := signRaw(p.pckKey, q.QEReport.Marshal())
	if err != nil {
		return nil, err
	}
	copy(q.QEReportSignature[:], sig)

	signed := append(q.Header.Marshal(), q.Body.Marshal()...)
	if sig, err = signRaw(p.attestationKey, signed); err != nil {
		return nil, err
	}
	copy(q.Signature[:], sig)
	return q.Marshal(), nil
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
