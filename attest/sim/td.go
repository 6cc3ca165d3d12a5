package sim

import (
	"cmp"
	"crypto/sha512"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/ppml/ppml/attest"
	"github.com/ppml/ppml/attest/rtmr"
	"github.com/ppml/ppml/attest/sgx"
	"github.com/ppml/ppml/attest/tdx"
	"github.com/ppml/ppml/collateral"
	"github.com/ppml/ppml/internal/atomicfile"
)

// Files of a TDX platform's folder.
const (
	tdFile     = "td.json" // the trust domain: TD, its RTMRs as extended so far
	tdLockFile = "td.lock" // held while the RTMRs are read or extended
	// rtmr3LogFile is the event log of RTMR3 (attest/rtmr), which TDAttester's extensions
	// append to.
	rtmr3LogFile = "rtmr3.log"
)

// The simulated TDX module and trust domain.
var (
	// teeTCBSVN is the platform's TEE_TCB_SVN: module ISVSVN 3, module major version 1 (graded
	// by the identity TDX_01), the rest graded by the TCB levels.
	teeTCBSVN = [16]byte{3, 1, 2}
	// mrSEAM stands for the measurement of Intel's TDX module; its signer (MRSIGNERSEAM) is
	// zero, as Intel's is.
	mrSEAM = sha512.Sum384([]byte("ppml simulated TDX module"))
	// DefaultMRTD is the MRTD of a simulated TD whose platform was made without one.
	DefaultMRTD = sha512.Sum384([]byte("ppml simulated TD image"))
)

// tdXFAM is the simulated TD's extended features: x87, SSE, AVX, AVX-512 state.
const tdXFAM = 0xe7

// TDOptions describe the trust domain of a new TDX platform.
type TDOptions struct {
	// QuoteVersion is the version of the quotes it writes: 4 (TD 1.0 body) or 5 (TD 1.5 body).
	// 0 means 4.
	QuoteVersion int
	// MRTD is the TD's build-time measurement; zero means DefaultMRTD.
	MRTD [48]byte
	// MRConfigID is what the VM launcher gave the TD (zero: nothing).
	MRConfigID [48]byte
}

// TD is the state of a TDX platform's trust domain, kept in its folder: what its quotes report.
type TD struct {
	QuoteVersion int           `json:"quote_version"`
	MRTD         attest.Hex    `json:"mrtd"`
	MRConfigID   attest.Hex    `json:"mrconfigid"`
	RTMRs        [4]attest.Hex `json:"rtmrs"`
}

// bootEvents are what the simulated firmware and boot loader measure into RTMR0 to RTMR2 when
// the TD starts: its configuration, its kernel and command line, its initrd.
var bootEvents = []string{"ppml simulated TD firmware configuration", "ppml simulated TD kernel", "ppml simulated TD initrd"}

// InitTDX creates a new TDX platform in dir, which must not exist, whose TCB evaluates to status
// (one of Statuses; "" means UpToDate) as of now, running the trust domain that opts describe.
// RTMR0 to RTMR2 hold the simulated boot's measurements; RTMR3 is zero until extended.
func InitTDX(dir string, opts TDOptions, status string, now time.Time) (*Platform, error) {
	if opts.QuoteVersion == 0 {
		opts.QuoteVersion = 4
	}
	if opts.QuoteVersion != 4 && opts.QuoteVersion != 5 {
		return nil, fmt.Errorf("quote version %d: a TDX platform writes versions 4 and 5", opts.QuoteVersion)
	}
	if opts.MRTD == [48]byte{} {
		opts.MRTD = DefaultMRTD
	}
	td := &TD{QuoteVersion: opts.QuoteVersion, MRTD: opts.MRTD[:], MRConfigID: opts.MRConfigID[:]}
	for i := range td.RTMRs {
		td.RTMRs[i] = make(attest.Hex, 48)
		if i < len(bootEvents) {
			digest := sha512.Sum384([]byte(bootEvents[i]))
			td.RTMRs[i] = ExtendRTMR(td.RTMRs[i], digest)
		}
	}
	return initPlatform(dir, attest.TDX, status, now, func(p *Platform) error { return p.writeTD(td) })
}

// ExtendRTMR returns what an RTMR holding rtmr holds once extended with digest, as the TDX
// module extends it: SHA-384(rtmr ‖ digest).
func ExtendRTMR(rtmr []byte, digest [48]byte) attest.Hex {
	h := sha512.New384()
	h.Write(rtmr)
	h.Write(digest[:])
	return h.Sum(nil)
}

// TD returns the platform's trust domain as it stands, its RTMRs as extended so far.
func (p *Platform) TD() (*TD, error) {
	if !p.Settings.isTDX() {
		return nil, fmt.Errorf("simulated platform %s is a platform of %s evidence, not of TDX quotes", p.Dir, cmp.Or(p.Settings.TEE, attest.SGX))
	}
	b, err := os.ReadFile(filepath.Join(p.Dir, tdFile))
	if err != nil {
		return nil, fmt.Errorf("simulated platform %s: %w", p.Dir, err)
	}
	td := new(TD)
	if err := json.Unmarshal(b, td); err != nil {
		return nil, fmt.Errorf("simulated platform %s: %s: %w", p.Dir, tdFile, err)
	}
	if len(td.MRTD) != 48 || len(td.MRConfigID) != 48 || slices.ContainsFunc(td.RTMRs[:], func(r attest.Hex) bool { return len(r) != 48 }) {
		return nil, fmt.Errorf("simulated platform %s: %s: a measurement is not 48 bytes", p.Dir, tdFile)
	}
	return td, nil
}

func (p *Platform) writeTD(td *TD) error {
	b, _ := json.MarshalIndent(td, "", "  ")
	return atomicfile.WriteFile(filepath.Join(p.Dir, tdFile), append(b, '\n'), 0o600, true)
}

// ExtendRTMR extends RTMR index (0 to 3) of the platform's trust domain with digest and returns
// its new value. The extension is kept in the platform's folder: extensions accumulate, across
// processes too, as in a TD until it is restarted. It logs nothing: RTMR3 extended here no
// longer replays from its log, as RTMR3 extended behind the log's back in a TD (extend it with
// TDAttester's ExtendRTMR3 to log the event).
func (p *Platform) ExtendRTMR(index int, digest [48]byte) (attest.Hex, error) {
	if index < 0 || index > 3 {
		return nil, fmt.Errorf("RTMR %d: a TD has RTMR0 to RTMR3", index)
	}
	unlock, err := p.lockTD()
	if err != nil {
		return nil, err
	}
	defer unlock()
	td, err := p.TD()
	if err != nil {
		return nil, err
	}
	td.RTMRs[index] = ExtendRTMR(td.RTMRs[index], digest)
	if err := p.writeTD(td); err != nil {
		return nil, err
	}
	return td.RTMRs[index], nil
}

// lockTD takes the lock of the platform's trust domain, for an extension to read and write its
// RTMRs alone.
func (p *Platform) lockTD() (func(), error) {
	f, err := os.OpenFile(filepath.Join(p.Dir, tdLockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("simulated platform %s: %w", p.Dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("simulated platform %s: lock %s: %w", p.Dir, tdLockFile, err)
	}
	return func() { f.Close() }, nil
}

// report returns the TD report of td for reportData: TD 1.5's (TEE_TCB_SVN2 as TEE_TCB_SVN, no
// service TD) for quote version 5, TD 1.0's for version 4.
func (td *TD) report(reportData [64]byte) *sgx.TDReport {
	r := &sgx.TDReport{TEETCBSVN: teeTCBSVN, MRSEAM: mrSEAM, ReportData: reportData}
	binary.LittleEndian.PutUint64(r.TDAttributes[:], sgx.TDAttrSEPTVEDisable)
	binary.LittleEndian.PutUint64(r.XFAM[:], tdXFAM)
	copy(r.MRTD[:], td.MRTD)
	copy(r.MRConfigID[:], td.MRConfigID)
	for i := range r.RTMRs {
		copy(r.RTMRs[i][:], td.RTMRs[i])
	}
	if td.QuoteVersion == 5 {
		r.TEETCBSVN2 = teeTCBSVN
	}
	return r
}

// TDQuote writes a TDX quote of the platform's trust domain, as it stands, for reportData:
// version 4 with a TD 1.0 body, or version 5 with a TD 1.5 body, as the platform was made. It is
// signed by the platform's attestation key, whose QE report, signed by the PCK key, is in
// certification data of type 6 around the PCK chain (type 5), as Intel's TD_QE writes them.
func (p *Platform) TDQuote(reportData [64]byte) ([]byte, error) {
	td, err := p.TD()
	if err != nil {
		return nil, err
	}
	q := &sgx.Quote{
		Header:   sgx.Header{Version: uint16(td.QuoteVersion), TEEType: sgx.TEETypeTDX},
		BodyType: sgx.BodyTD10,
		TD:       td.report(reportData),
	}
	if td.QuoteVersion == 5 {
		q.BodyType = sgx.BodyTD15
	}
	return p.sign(q)
}

// TDAttester returns the platform's trust domain as an attester: its evidence is TDQuote's, and
// goes with the event log of RTMR3 that the platform's folder keeps, which its extensions of
// RTMR3 (rtmr.Extender) append to.
func (p *Platform) TDAttester() rtmr.Attester {
	return rtmr.Attester{
		Attester: quoter{attest.TDX, p.TDQuote},
		Log: rtmr.Log{Path: filepath.Join(p.Dir, rtmr3LogFile), Extend: func(digest [48]byte) error {
			_, err := p.ExtendRTMR(3, digest)
			return err
		}},
	}
}

// quoter is an attester of one kind of evidence, which quote writes.
type quoter struct {
	kind  attest.Kind
	quote func(reportData [64]byte) ([]byte, error)
}

func (q quoter) Kind() attest.Kind                                   { return q.kind }
func (q quoter) Attest(reportData attest.ReportData) ([]byte, error) { return q.quote(reportData) }

// newTDVerifier returns the verifier of the quotes of one simulated TDX platform: the DCAP
// engine of genuine TD quotes (attest/tdx), trusting the platform's root and collateral only.
// Quotes of other roots are refused with attest.ErrUntrustedRoot.
func newTDVerifier(root *x509.Certificate, bundle *collateral.Bundle) (attest.Verifier, error) {
	roots := x509.NewCertPool()
	roots.AddCert(root)
	return tdx.NewVerifier(tdx.Options{Roots: roots, Collateral: bundle, Platform: attest.Simulated})
}
