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
	"strings"
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

// Statuses that only a verdict has: Intel's QVL gives them to a TD 1.5 whose TDX module has been
// updated since it was launched (TEE_TCB_SVN2 up to date, TEE_TCB_SVN behind): relaunching the TD
// brings it up to date.
const (
	StatusTDRelaunchAdvised                    = "TDRelaunchAdvised"
	StatusTDRelaunchAdvisedConfigurationNeeded = "TDRelaunchAdvisedConfigurationNeeded"
)

// TCBInfo is Intel's TCB info for one FMSPC (versions 2 and 3, SGX or TDX): which platform TCB
// levels exist and what status each has, and for TDX which TDX modules are genuine.
type TCBInfo struct {
	ID                      string // "SGX" or "TDX" (version 3); empty in version 2
	Version                 int
	IssueDate, NextUpdate   time.Time
	FMSPC                   [6]byte
	PCEID                   [2]byte
	TCBType                 int
	TCBEvaluationDataNumber int
	TCBLevels               []TCBLevel // in Intel's order: the first match wins
	// SGXComponentNames and TDXComponentNames say what each component is ("BIOS", "SGX Late
	// Microcode Update", "TDX Module", ...): the category and type of the first level's.
	SGXComponentNames, TDXComponentNames [16]string

	// TDX only: the identity of TDX modules without one of their own (TEE_TCB_SVN[1] = 0), and
	// the identities "TDX_%02X" of the others, each with its own TCB levels.
	TDXModule           *TDXModule
	TDXModuleIdentities []TDXModuleIdentity

	signed
}

// TCBLevel is one platform TCB level of a TCB info.
type TCBLevel struct {
	SGXComponents [16]uint8
	PCESVN        uint16
	TDXComponents [16]uint8 // TDX TCB info only
	TCBDate       time.Time
	Status        string
	AdvisoryIDs   []string
}

// TDXModule is what a genuine TDX module's MRSIGNERSEAM and SEAMATTRIBUTES must be.
type TDXModule struct {
	MRSigner       [48]byte
	Attributes     [8]byte
	AttributesMask [8]byte
}

// TDXModuleIdentity is the identity of the TDX modules of one major version (ID "TDX_%02X") and
// the status of each module ISVSVN (TEE_TCB_SVN[0]).
type TDXModuleIdentity struct {
	ID string
	TDXModule
	TCBLevels []QETCBLevel // in Intel's order: the first with ISVSVN <= the module's wins
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

// QETCBLevel is one TCB level of a QE identity or of a TDX module identity.
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

// check validates the date and status of a level: one of allowed.
func (l *jsonLevel) check(allowed []string) (time.Time, error) {
	if !slices.Contains(allowed, l.TCBStatus) {
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
		FMSPC               string               `json:"fmspc"`
		PCEID               string               `json:"pceId"`
		TCBType             int                  `json:"tcbType"`
		TCBLevels           []jsonLevel          `json:"tcbLevels"`
		TDXModule           *jsonModule          `json:"tdxModule"`
		TDXModuleIdentities []jsonModuleIdentity `json:"tdxModuleIdentities"`
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
		if l.TCBDate, err = jl.check(statuses); err == nil {
			err = t.parseTCB(&l, jl.TCB, i == 0)
		}
		if err != nil {
			return nil, fmt.Errorf("TCB info: TCB level %d: %w", i, err)
		}
		t.TCBLevels = append(t.TCBLevels, l)
	}
	if t.ID == "TDX" {
		if err := t.parseModules(j.TDXModule, j.TDXModuleIdentities); err != nil {
			return nil, fmt.Errorf("TCB info: %w", err)
		}
	}
	return t, nil
}

// jsonModule is a TDX module identity of a TCB info as Intel writes it.
type jsonModule struct {
	MRSigner       string `json:"mrsigner"`
	Attributes     string `json:"attributes"`
	AttributesMask string `json:"attributesMask"`
}

type jsonModuleIdentity struct {
	ID string `json:"id"`
	jsonModule
	TCBLevels []jsonLevel `json:"tcbLevels"`
}

// moduleStatuses are the statuses a TDX module's TCB level may have, as Intel's QVL accepts them.
var moduleStatuses = []string{StatusUpToDate, StatusOutOfDate, StatusRevoked}

// parseModules reads the TDX module identity (required) and the module identities (optional).
func (t *TCBInfo) parseModules(m *jsonModule, ids []jsonModuleIdentity) error {
	if m == nil {
		return fmt.Errorf("%w: a TDX TCB info without tdxModule", ErrFormat)
	}
	t.TDXModule = new(TDXModule)
	if err := m.decode(t.TDXModule, "tdxModule"); err != nil {
		return err
	}
	for i, jm := range ids {
		id := TDXModuleIdentity{ID: jm.ID}
		name := fmt.Sprintf("tdxModuleIdentities[%d]", i)
		if err := jm.decode(&id.TDXModule, name); err != nil {
			return err
		}
		levels, err := parseISVSVNLevels(jm.TCBLevels, moduleStatuses)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		id.TCBLevels = levels
		t.TDXModuleIdentities = append(t.TDXModuleIdentities, id)
	}
	return nil
}

// decode decodes the hex fields of m into dst.
func (m *jsonModule) decode(dst *TDXModule, name string) error {
	for _, f := range []struct {
		dst  []byte
		src  string
		name string
	}{
		{dst.MRSigner[:], m.MRSigner, "mrsigner"},
		{dst.Attributes[:], m.Attributes, "attributes"},
		{dst.AttributesMask[:], m.AttributesMask, "attributesMask"},
	} {
		if err := hexInto(f.dst, f.src, name+"."+f.name); err != nil {
			return err
		}
	}
	return nil
}

// parseTCB reads the SGX component SVNs and PCESVN of a level's "tcb" object into l: a
// "sgxtcbcomponents" array in version 3, "sgxtcbcompNNsvn" fields in version 2; and for TDX the
// "tdxtcbcomponents" array. With names, it records what the components are.
func (t *TCBInfo) parseTCB(l *TCBLevel, raw json.RawMessage, names bool) error {
	var tcb map[string]json.RawMessage
	if err := json.Unmarshal(raw, &tcb); err != nil {
		return fmt.Errorf("%w: tcb: %v", ErrFormat, err)
	}
	if err := jsonField(tcb, "pcesvn", &l.PCESVN); err != nil {
		return err
	}
	if t.Version == 2 {
		for i := range l.SGXComponents {
			if err := jsonField(tcb, fmt.Sprintf("sgxtcbcomp%02dsvn", i+1), &l.SGXComponents[i]); err != nil {
				return err
			}
		}
		return nil
	}
	var sgxNames, tdxNames *[16]string
	if names {
		sgxNames, tdxNames = &t.SGXComponentNames, &t.TDXComponentNames
	}
	if err := components(tcb, "sgxtcbcomponents", &l.SGXComponents, sgxNames); err != nil {
		return err
	}
	if t.ID == "TDX" {
		return components(tcb, "tdxtcbcomponents", &l.TDXComponents, tdxNames)
	}
	return nil
}

// components reads the array of 16 components name of tcb into svns, and their category and
// type into names if it is not nil.
func components(tcb map[string]json.RawMessage, name string, svns *[16]uint8, names *[16]string) error {
	var comps []struct {
		SVN      *uint8 `json:"svn"`
		Category string `json:"category"`
		Type     string `json:"type"`
	}
	if err := jsonField(tcb, name, &comps); err != nil {
		return err
	}
	if len(comps) != len(svns) {
		return fmt.Errorf("%w: %d %s, want 16", ErrFormat, len(comps), name)
	}
	for i, c := range comps {
		if c.SVN == nil {
			return fmt.Errorf("%w: %s[%d] has no svn", ErrFormat, name, i)
		}
		svns[i] = *c.SVN
		if names != nil {
			names[i] = strings.TrimSpace(c.Category + " " + c.Type)
		}
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
	if q.TCBLevels, err = parseISVSVNLevels(j.TCBLevels, statuses); err != nil {
		return nil, fmt.Errorf("QE identity: %w", err)
	}
	return q, nil
}

// parseISVSVNLevels reads TCB levels graded by ISVSVN (a QE's or a TDX module's), each with one
// of the statuses allowed.
func parseISVSVNLevels(jls []jsonLevel, allowed []string) ([]QETCBLevel, error) {
	if len(jls) == 0 {
		return nil, fmt.Errorf("%w: no TCB levels", ErrFormat)
	}
	var levels []QETCBLevel
	for i, jl := range jls {
		l := QETCBLevel{Status: jl.TCBStatus, AdvisoryIDs: jl.AdvisoryIDs}
		var tcb map[string]json.RawMessage
		var err error
		if l.TCBDate, err = jl.check(allowed); err == nil {
			if err = json.Unmarshal(jl.TCB, &tcb); err != nil {
				err = fmt.Errorf("%w: tcb: %v", ErrFormat, err)
			} else {
				err = jsonField(tcb, "isvsvn", &l.ISVSVN)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("TCB level %d: %w", i, err)
		}
		levels = append(levels, l)
	}
	return levels, nil
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
