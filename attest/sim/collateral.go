package sim

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ppml/ppml/collateral"
)

// pcsTime is the time format of Intel's PCS.
const pcsTime = "2006-01-02T15:04:05Z"

// simAdvisory is the advisory ID that a platform below UpToDate reports.
const simAdvisory = "PPML-SIM-0001"

// RevokePCK puts the platform's PCK certificate on its PCK CRL, reissued as of now.
func (p *Platform) RevokePCK(now time.Time) error {
	p.Settings.Created = now.UTC().Truncate(time.Second)
	return p.writeCollateral([]*big.Int{p.pck.SerialNumber})
}

// writeCollateral signs and writes the platform's collateral, issued at p.Settings.Created, with
// revoked on the PCK CRL.
func (p *Platform) writeCollateral(revoked []*big.Int) error {
	now := p.Settings.Created
	tcbInfo, err := p.signed("tcbInfo", p.tcbInfo(now))
	if err != nil {
		return err
	}
	qeIdentity, err := p.signed("enclaveIdentity", p.qeIdentity(now))
	if err != nil {
		return err
	}
	rootCRL, err := issueCRL(p.root, p.rootKey, nil, now)
	if err != nil {
		return err
	}
	pckCRL, err := issueCRL(p.pckCA, p.pckCAKey, revoked, now)
	if err != nil {
		return err
	}
	b := &collateral.Bundle{
		TCBInfo:               tcbInfo,
		TCBInfoIssuerChain:    pemChain(p.signer, p.root),
		QEIdentity:            qeIdentity,
		QEIdentityIssuerChain: pemChain(p.signer, p.root),
		PCKCRL:                pckCRL,
		PCKCRLIssuerChain:     pemChain(p.pckCA, p.root),
		RootCACRL:             rootCRL,
	}
	dir := filepath.Join(p.Dir, collateralDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return b.WriteDir(dir)
}

// signed returns Intel's PCS body {"NAME":OBJECT,"signature":"HEX"}: an ECDSA P-256 signature by
// the TCB signing key over the exact bytes of the object, as r ‖ s.
func (p *Platform) signed(name string, object any) ([]byte, error) {
	obj, err := json.Marshal(object)
	if err != nil {
		return nil, err
	}
	sig, err := signRaw(p.signerKey, obj)
	if err != nil {
		return nil, err
	}
	return fmt.Appendf(nil, `{"%s":%s,"signature":"%s"}`, name, obj, hex.EncodeToString(sig)), nil
}

// signRaw signs the SHA-256 of msg and returns r ‖ s, 32 bytes each, as quotes and PCS bodies
// carry ECDSA signatures.
func signRaw(key *ecdsa.PrivateKey, msg []byte) ([]byte, error) {
	digest := sha256.Sum256(msg)
	r, s, err := ecdsa.Sign(rand.Reader, key, digest[:])
	if err != nil {
		return nil, err
	}
	return append(r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32))...), nil
}

type tcbInfo struct {
	ID                      string      `json:"id"`
	Version                 int         `json:"version"`
	IssueDate               string      `json:"issueDate"`
	NextUpdate              string      `json:"nextUpdate"`
	FMSPC                   string      `json:"fmspc"`
	PCEID                   string      `json:"pceId"`
	TCBType                 int         `json:"tcbType"`
	TCBEvaluationDataNumber int         `json:"tcbEvaluationDataNumber"`
	TDXModule               *tdxModule  `json:"tdxModule,omitempty"`
	TDXModuleIdentities     []tdxModule `json:"tdxModuleIdentities,omitempty"`
	TCBLevels               []tcbLevel  `json:"tcbLevels"`
}

// tdxModule is the TDX module of a TDX TCB info (tdxModule) or one of its identities
// (tdxModuleIdentities, with an ID and TCB levels).
type tdxModule struct {
	ID             string       `json:"id,omitempty"`
	MRSigner       string       `json:"mrsigner"`
	Attributes     string       `json:"attributes"`
	AttributesMask string       `json:"attributesMask"`
	TCBLevels      []qeTCBLevel `json:"tcbLevels,omitempty"`
}

type tcbLevel struct {
	TCB struct {
		SGXComponents []svn  `json:"sgxtcbcomponents"`
		PCESVN        uint16 `json:"pcesvn"`
		TDXComponents []svn  `json:"tdxtcbcomponents,omitempty"`
	} `json:"tcb"`
	TCBDate     string   `json:"tcbDate"`
	TCBStatus   string   `json:"tcbStatus"`
	AdvisoryIDs []string `json:"advisoryIDs,omitempty"`
}

type svn struct {
	SVN uint8 `json:"svn"`
}

// tcbInfo makes the platform's TCB info: its own TCB is the level with its status; below
// UpToDate, a newer UpToDate level comes first, as when Intel has published a fix. A TDX
// platform's levels grade TEE_TCB_SVN too, and its module has an identity of its own, TDX_01.
func (p *Platform) tcbInfo(now time.Time) tcbInfo {
	tdx := p.Settings.isTDX()
	level := func(comps [16]uint8, pcesvn uint16, status string) tcbLevel {
		var l tcbLevel
		for _, c := range comps {
			l.TCB.SGXComponents = append(l.TCB.SGXComponents, svn{c})
		}
		if tdx {
			for _, c := range teeTCBSVN {
				l.TCB.TDXComponents = append(l.TCB.TDXComponents, svn{c})
			}
		}
		l.TCB.PCESVN, l.TCBDate, l.TCBStatus = pcesvn, now.Format(pcsTime), status
		if status != "UpToDate" {
			l.AdvisoryIDs = []string{simAdvisory}
		}
		return l
	}
	info := tcbInfo{
		ID: "SGX", Version: 3, IssueDate: now.Format(pcsTime), NextUpdate: now.Add(collateralValidity).Format(pcsTime),
		FMSPC: p.Settings.FMSPC, PCEID: "0000", TCBEvaluationDataNumber: 1,
	}
	if tdx {
		// Some verifiers (go-tdx-guest) compare the FMSPC with the PCK certificate's in lower case.
		info.ID, info.FMSPC = "TDX", strings.ToLower(p.Settings.FMSPC)
		module := tdxModule{MRSigner: strings.Repeat("00", 48), Attributes: "0000000000000000", AttributesMask: "FFFFFFFFFFFFFFFF"}
		info.TDXModule = &module
		id := module
		id.ID = fmt.Sprintf("TDX_%02X", teeTCBSVN[1])
		id.TCBLevels = []qeTCBLevel{{TCBDate: now.Format(pcsTime), TCBStatus: "UpToDate"}}
		id.TCBLevels[0].TCB.ISVSVN = uint16(teeTCBSVN[0])
		info.TDXModuleIdentities = []tdxModule{id}
	}
	if p.Settings.TCBStatus != "UpToDate" {
		newer := platformTCB
		newer[0]++
		info.TCBLevels = append(info.TCBLevels, level(newer, platformPCESVN+1, "UpToDate"))
	}
	info.TCBLevels = append(info.TCBLevels, level(platformTCB, platformPCESVN, p.Settings.TCBStatus))
	return info
}

type qeIdentityBody struct {
	ID                      string       `json:"id"`
	Version                 int          `json:"version"`
	IssueDate               string       `json:"issueDate"`
	NextUpdate              string       `json:"nextUpdate"`
	TCBEvaluationDataNumber int          `json:"tcbEvaluationDataNumber"`
	MiscSelect              string       `json:"miscselect"`
	MiscSelectMask          string       `json:"miscselectMask"`
	Attributes              string       `json:"attributes"`
	AttributesMask          string       `json:"attributesMask"`
	MRSigner                string       `json:"mrsigner"`
	ISVProdID               uint16       `json:"isvprodid"`
	TCBLevels               []qeTCBLevel `json:"tcbLevels"`
}

type qeTCBLevel struct {
	TCB struct {
		ISVSVN uint16 `json:"isvsvn"`
	} `json:"tcb"`
	TCBDate   string `json:"tcbDate"`
	TCBStatus string `json:"tcbStatus"`
}

// qeIdentity describes the simulated Quoting Enclave as Intel describes its own: QE for SGX,
// TD_QE for TDX.
func (p *Platform) qeIdentity(now time.Time) qeIdentityBody {
	level := qeTCBLevel{TCBDate: now.Format(pcsTime), TCBStatus: "UpToDate"}
	level.TCB.ISVSVN = qeSVN
	id := "QE"
	if p.Settings.isTDX() {
		id = "TD_QE"
	}
	return qeIdentityBody{
		ID: id, Version: 2, IssueDate: now.Format(pcsTime), NextUpdate: now.Add(collateralValidity).Format(pcsTime),
		TCBEvaluationDataNumber: 1,
		MiscSelect:              "00000000", MiscSelectMask: "FFFFFFFF",
		Attributes: "11000000000000000000000000000000", AttributesMask: "FBFFFFFFFFFFFFFF0000000000000000",
		MRSigner: fmt.Sprintf("%X", qeMRSigner), ISVProdID: p.qeProdID(),
		TCBLevels: []qeTCBLevel{level},
	}
}

func issueCRL(issuer *x509.Certificate, key *ecdsa.PrivateKey, revoked []*big.Int, now time.Time) ([]byte, error) {
	tmpl := &x509.RevocationList{
		Number:     big.NewInt(now.Unix()),
		ThisUpdate: now.Add(-time.Hour),
		NextUpdate: now.Add(collateralValidity),
	}
	for _, serial := range revoked {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{SerialNumber: serial, RevocationTime: now})
	}
	return x509.CreateRevocationList(rand.Reader, tmpl, issuer, key)
}

func pemChain(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}
