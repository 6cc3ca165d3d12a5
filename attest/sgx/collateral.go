package sgx

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"slices"
	"time"
)

// TCB statuses, as Intel names them, from best to worst.
const (
	StatusUpToDate                          = "UpToDate"
	StatusSWHardeningNeeded                 = "SWHardeningNeeded"
	StatusConfigurationNeeded               = "ConfigurationNeeded"
	StatusConfigurationAndSWHardeningNeeded = "ConfigurationAndSWHardeningNeeded"
	StatusOutOfDate                         = "OutOfDate"
	StatusOutOfDateConfigurationNeeded      = "OutOfDateConfigurationNeeded"
	StatusRevoked                           = "Revoked"
)

var statuses = []string{
	StatusUpToDate, StatusSWHardeningNeeded, StatusConfigurationNeeded,
	StatusConfigurationAndSWHardeningNeeded, StatusOutOfDate, StatusOutOfDateConfigurationNeeded,
	StatusRevoked,
}

// TCBInfo is Intel's TCB info for one FMSPC (versions 2 and 3): which platform TCB levels exist
// and what status each has. Only the SGX parts are read; TDX fields are tolerated and ignored.
type TCBInfo struct {
	ID                      string // "SGX" or "TDX" (version 3); empty in version 2
	Version                 int
	IssueDate, NextUpdate   time.Time
	FMSPC                   [6]byte
	PCEID                   [2]byte
	TCBType                 int
	TCBEvaluationDataNumber int
	TCBLevels               []TCBLevel // in Intel's order: the first match wins

	signed
}

// TCBLevel is one platform TCB level of a TCB info.
type TCBLevel struct {
	SGXComponents [16]uint8
	PCESVN        uint16
	TCBDate       time.Time
	Status        string
	AdvisoryIDs   []string
}

// QEIdentity is Intel's identity of a Quoting Enclave (version 2): the values its report must
// have and the status of each ISVSVN.
type QEIdentity struct {
	ID                      string // "QE" for SGX quotes ("TD_QE" for TDX, "QVE")
	Version                 int
	IssueDate, NextUpdate   time.Time
	TCBEvaluationDataNumber int
	MiscSelect              [4]byte // compared with the report's MISCSELECT (little-endian) under MiscSelectMask
	MiscSelectMask          [4]byte
	Attributes              [16]byte // compared with the report's ATTRIBUTES under AttributesMask
	AttributesMask          [16]byte
	MRSigner                [32]byte
	ISVProdID               uint16
	TCBLevels               []QETCBLevel // in Intel's order: the first with ISVSVN <= the report's wins

	signed
}

// QETCBLevel is one TCB level of a QE identity.
type QETCBLevel struct {
	ISVSVN      uint16
	TCBDate     time.Time
	Status      string
	AdvisoryIDs []string
}

// signed holds the exact signed bytes of a PCS body's inner object and its signature.
type signed struct {
	raw []byte
	sig [signatureSize]byte
}

// verify checks the ECDSA P-256 signature of s with the key of c.
func (s *signed) verify(c *x509.Certificate) error {
	pub, ok := c.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return fmt.Errorf("%w: signer %q has a %T key, want ECDSA", ErrSignature, c.Subject.CommonName, c.PublicKey)
	}
	if !verifyRS(pub, s.raw, s.sig[:]) {
		return fmt.Errorf("%w (signer %q)", ErrSignature, c.Subject.CommonName)
	}
	return nil
}

// verifyRS checks a raw r ‖ s ECDSA signature over SHA-256(msg).
func verifyRS(pub *ecdsa.PublicKey, msg, sig []byte) bool {
	h := sha256.Sum256(msg)
	n := len(sig) / 2
	return ecdsa.Verify(pub, h[:], new(big.Int).SetBytes(sig[:n]), new(big.Int).SetBytes(sig[n:]))
}

// splitBody takes a PCS body {"<key>":{...},"signature":"<hex r‖s>"} apart.
func splitBody(body []byte, key string) (signed, error) {
	var s signed
	var parts map[string]json.RawMessage
	if err := json.Unmarshal(body, &parts); err != nil {
		return s, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	s.raw = parts[key]
	if len(s.raw) == 0 || s.raw[0] != '{' {
		return s, fmt.Errorf("%w: no %q object", ErrFormat, key)
	}
	var sig string
	if err := json.Unmarshal(parts["signature"], &sig); err != nil {
		return s, fmt.Errorf("%w: signature: want a hex string", ErrFormat)
	}
	return s, hexInto(s.sig[:], sig, "signature")
}

// jsonHeader holds the fields that TCB info and QE identity share.
type jsonHeader struct {
	ID                      string `json:"id"`
	Version                 int    `json:"version"`
	IssueDate               string `json:"issueDate"`
	NextUpdate              string `json:"nextUpdate"`
	TCBEvaluationDataNumber int    `json:"tcbEvaluationDataNumber"`
}

// dates parses the issue and next-update dates.
func (h *jsonHeader) dates() (issue, next time.Time, err error) {
	if issue, err = time.Parse(time.RFC3339, h.IssueDate); err != nil {
		return issue, next, fmt.Errorf("%w: issueDate: %v", ErrFormat, err)
	}
	if next, err = time.Parse(time.RFC3339, h.NextUpdate); err != nil {
		return issue, next, fmt.Errorf("%w: nextUpdate: %v", ErrFormat, err)
	}
	return issue, next, nil
}

// jsonLevel holds the fields that every TCB level has.
type jsonLevel struct {
	TCB         json.RawMessage `json:"tcb"`
	TCBDate     string          `json:"tcbDate"`
	TCBStatus   string          `json:"tcbStatus"`
	AdvisoryIDs []string        `json:"advisoryIDs"`
}

// check validates the date and status of a level.
func (l *jsonLevel) check() (time.Time, error) {
	if !slices.Contains(statuses, l.TCBStatus) {
		return time.Time{}, fmt.Errorf("%w: unknown TCB status %q", ErrFormat, l.TCBStatus)
	}
	d, err := time.Parse(time.RFC3339, l.TCBDate)
	if err != nil {
		return d, fmt.Errorf("%w: tcbDate: %v", ErrFormat, err)
	}
	return d, nil
}

// ParseTCBInfo parses a PCS TCB info body, {"tcbInfo":{...},"signature":"..."}. It does not check
// the signature. Errors wrap ErrFormat or ErrUnsupported.
func ParseTCBInfo(body []byte) (*TCBInfo, error) {
	s, err := splitBody(body, "tcbInfo")
	if err != nil {
		return nil, fmt.Errorf("TCB info: %w", err)
	}
	var j struct {
		jsonHeader
		FMSPC     string      `json:"fmspc"`
		PCEID     string      `json:"pceId"`
		TCBType   int         `json:"tcbType"`
		TCBLevels []jsonLevel `json:"tcbLevels"`
	}
	if err := json.Unmarshal(s.raw, &j); err != nil {
		return nil, fmt.Errorf("TCB info: %w: %v", ErrFormat, err)
	}
	t := &TCBInfo{ID: j.ID, Version: j.Version, TCBType: j.TCBType, TCBEvaluationDataNumber: j.TCBEvaluationDataNumber, signed: s}
	switch {
	case j.Version == 2 && j.ID == "", j.Version == 3 && (j.ID == "SGX" || j.ID == "TDX"):
	default:
		return nil, fmt.Errorf("TCB info: %w: version %d, id %q", ErrUnsupported, j.Version, j.ID)
	}
	if t.IssueDate, t.NextUpdate, err = j.dates(); err != nil {
		return nil, fmt.Errorf("TCB info: %w", err)
	}
	if err := hexInto(t.FMSPC[:], j.FMSPC, "fmspc"); err != nil {
		return nil, fmt.Errorf("TCB info: %w", err)
	}
	if err := hexInto(t.PCEID[:], j.PCEID, "pceId"); err != nil {
		return nil, fmt.Errorf("TCB info: %w", err)
	}
	if len(j.TCBLevels) == 0 {
		return nil, fmt.Errorf("TCB info: %w: no TCB levels", ErrFormat)
	}
	for i, jl := range j.TCBLevels {
		l := TCBLevel{Status: jl.TCBStatus, AdvisoryIDs: jl.AdvisoryIDs}
		if l.TCBDate, err = jl.check(); err == nil {
			err = l.parseTCB(jl.TCB, j.Version)
		}
		if err != nil {
			return nil, fmt.Errorf("TCB info: TCB level %d: %w", i, err)
		}
		t.TCBLevels = append(t.TCBLevels, l)
	}
	return t, nil
}

// parseTCB reads the SGX component SVNs and PCESVN of a level's "tcb" object: a
// "sgxtcbcomponents" array in version 3, "sgxtcbcompNNsvn" fields in version 2.
func (l *TCBLevel) parseTCB(raw json.RawMessage, version int) error {
	var tcb map[string]json.RawMessage
	if err := json.Unmarshal(raw, &tcb); err != nil {
		return fmt.Errorf("%w: tcb: %v", ErrFormat, err)
	}
	if err := jsonField(tcb, "pcesvn", &l.PCESVN); err != nil {
		return err
	}
	if version == 2 {
		for i := range l.SGXComponents {
			if err := jsonField(tcb, fmt.Sprintf("sgxtcbcomp%02dsvn", i+1), &l.SGXComponents[i]); err != nil {
				return err
			}
		}
		return nil
	}
	var comps []struct {
		SVN *uint8 `json:"svn"`
	}
	if err := jsonField(tcb, "sgxtcbcomponents", &comps); err != nil {
		return err
	}
	if len(comps) != len(l.SGXComponents) {
		return fmt.Errorf("%w: %d sgxtcbcomponents, want 16", ErrFormat, len(comps))
	}
	for i, c := range comps {
		if c.SVN == nil {
			return fmt.Errorf("%w: sgxtcbcomponents[%d] has no svn", ErrFormat, i)
		}
		l.SGXComponents[i] = *c.SVN
	}
	return nil
}

// ParseQEIdentity parses a PCS QE identity body (version 2),
// {"enclaveIdentity":{...},"signature":"..."}. It does not check the signature. Errors wrap
// ErrFormat or ErrUnsupported.
func ParseQEIdentity(body []byte) (*QEIdentity, error) {
	s, err := splitBody(body, "enclaveIdentity")
	if err != nil {
		return nil, fmt.Errorf("QE identity: %w", err)
	}
	var j struct {
		jsonHeader
		MiscSelect     string      `json:"miscselect"`
		MiscSelectMask string      `json:"miscselectMask"`
		Attributes     string      `json:"attributes"`
		AttributesMask string      `json:"attributesMask"`
		MRSigner       string      `json:"mrsigner"`
		ISVProdID      uint16      `json:"isvprodid"`
		TCBLevels      []jsonLevel `json:"tcbLevels"`
	}
	if err := json.Unmarshal(s.raw, &j); err != nil {
		return nil, fmt.Errorf("QE identity: %w: %v", ErrFormat, err)
	}
	if j.Version != 2 {
		return nil, fmt.Errorf("QE identity: %w: version %d, want 2", ErrUnsupported, j.Version)
	}
	q := &QEIdentity{ID: j.ID, Version: j.Version, TCBEvaluationDataNumber: j.TCBEvaluationDataNumber, ISVProdID: j.ISVProdID, signed: s}
	if q.IssueDate, q.NextUpdate, err = j.dates(); err != nil {
		return nil, fmt.Errorf("QE identity: %w", err)
	}
	for _, f := range []struct {
		dst  []byte
		src  string
		name string
	}{
		{q.MiscSelect[:], j.MiscSelect, "miscselect"},
		{q.MiscSelectMask[:], j.MiscSelectMask, "miscselectMask"},
		{q.Attributes[:], j.Attributes, "attributes"},
		{q.AttributesMask[:], j.AttributesMask, "attributesMask"},
		{q.MRSigner[:], j.MRSigner, "mrsigner"},
	} {
		if err := hexInto(f.dst, f.src, f.name); err != nil {
			return nil, fmt.Errorf("QE identity: %w", err)
		}
	}
	if len(j.TCBLevels) == 0 {
		return nil, fmt.Errorf("QE identity: %w: no TCB levels", ErrFormat)
	}
	for i, jl := range j.TCBLevels {
		l := QETCBLevel{Status: jl.TCBStatus, AdvisoryIDs: jl.AdvisoryIDs}
		var tcb map[string]json.RawMessage
		if l.TCBDate, err = jl.check(); err == nil {
			if err = json.Unmarshal(jl.TCB, &tcb); err != nil {
				err = fmt.Errorf("%w: tcb: %v", ErrFormat, err)
			} else {
				err = jsonField(tcb, "isvsvn", &l.ISVSVN)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("QE identity: TCB level %d: %w", i, err)
		}
		q.TCBLevels = append(q.TCBLevels, l)
	}
	return q, nil
}

// jsonField decodes the required member name of m into v.
func jsonField(m map[string]json.RawMessage, name string, v any) error {
	raw, ok := m[name]
	if !ok {
		return fmt.Errorf("%w: no %s", ErrFormat, name)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrFormat, name, err)
	}
	return nil
}

// hexInto decodes s, which must encode exactly len(dst) bytes, into dst.
func hexInto(dst []byte, s, name string) error {
	if len(s) != 2*len(dst) {
		return fmt.Errorf("%w: %s: %d hex digits, want %d", ErrFormat, name, len(s), 2*len(dst))
	}
	if _, err := hex.Decode(dst, []byte(s)); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrFormat, name, err)
	}
	return nil
}
