// Package sim is ppml's simulated platforms. An Intel one, SGX or TDX, is a simulated Intel PKI
// (root CA, PCK platform CA, PCK certificate with SGX extensions, TCB signing certificate), the
// collateral Intel's PCS would serve for it (TCB info, QE or TD_QE identity, CRLs), and a
// simulated Quoting Enclave that writes real-format DCAP quotes: v3 for an SGX enclave, v4 and v5
// for a trust domain whose MRTD, MRCONFIGID and RTMRs the platform's folder keeps. An AMD one
// (SNPPlatform) is a simulated ARK, ASK and VCEK writing real-format SEV-SNP attestation reports.
//
// Their evidence goes through the very same verifiers as genuine evidence (attest/sgx,
// attest/tdx, attest/snp). It verifies only where the platform's root is explicitly trusted; to
// any verifier trusting Intel's or AMD's roots it comes from an unknown root, and is refused. A
// simulated platform protects nothing: it is for development, tests and demonstrations on
// machines without a TEE.
package sim

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/ppml/ppml/attest"
	"github.com/ppml/ppml/attest/sgx"
	"github.com/ppml/ppml/collateral"
)

// Files of a platform folder, besides the collateral in its collateral/ subfolder.
const (
	platformFile    = "platform.json"
	rootCertFile    = "root-ca.pem"
	rootKeyFile     = "root-ca.key"
	pckCACertFile   = "pck-ca.pem"
	pckCAKeyFile    = "pck-ca.key"
	pckCertFile     = "pck.pem"
	pckKeyFile      = "pck.key"
	signerCertFile  = "tcb-signing.pem"
	signerKeyFile   = "tcb-signing.key"
	attestKeyFile   = "attestation.key"
	qeReportSigFile = "qe-report.sig" // the PCK key's signature of the QE report: r ‖ s
	collateralDir   = "collateral"
)

// Validity of what a platform issues. Collateral lasts a year rather than Intel's 30 days, so that
// a development platform keeps working; ppml sim init makes a fresh one at any time.
const (
	certValidity       = 10 * 365 * 24 * time.Hour
	collateralValidity = 365 * 24 * time.Hour
)

// The simulated platform's TCB: what its PCK certificate and quotes carry.
var (
	platformTCB    = [16]uint8{5, 5, 2, 2, 4, 1, 0, 3}
	platformPCESVN = uint16(11)
	qeSVN          = uint16(8)
	// qeMRSigner stands for the MRSIGNER of Intel's Quoting Enclave.
	qeMRSigner = sha256.Sum256([]byte("ppml simulated Quoting Enclave"))
	// intelQEVendorID is the vendor ID of Intel's Quoting Enclave.
	intelQEVendorID = [16]byte{0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07}
)

// Statuses lists the TCB statuses a platform can be made to evaluate to, best first.
var Statuses = []string{
	"UpToDate", "SWHardeningNeeded", "ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded",
	"OutOfDate", "OutOfDateConfigurationNeeded", "Revoked",
}

// Settings describe a platform.
type Settings struct {
	// TEE is what the platform attests: attest.SGX enclaves ("" in folders made before TDX) or
	// attest.TDX trust domains.
	TEE       attest.Kind `json:"tee,omitempty"`
	FMSPC     string      `json:"fmspc"`      // upper-case hex, 6 bytes
	TCBStatus string      `json:"tcb_status"` // what the platform's TCB evaluates to
	Created   time.Time   `json:"created"`
}

// isTDX reports whether the platform attests trust domains.
func (s *Settings) isTDX() bool { return s.TEE == attest.TDX }

// Platform is a simulated platform loaded from its folder.
type Platform struct {
	Dir      string
	Settings Settings

	root, pckCA, pck, signer             *x509.Certificate
	rootKey, pckCAKey, pckKey, signerKey *ecdsa.PrivateKey
	attestationKey                       *ecdsa.PrivateKey
	qeReportSignature                    [64]byte
}

// Init creates a new SGX platform in dir, which must not exist, whose TCB evaluates to status
// (one of Statuses; "" means UpToDate) as of now.
func Init(dir, status string, now time.Time) (*Platform, error) {
	return initPlatform(dir, attest.SGX, status, now, nil)
}

// initPlatform creates a new platform of the kind tee in dir, which must not exist, whose TCB
// evaluates to status as of now; then, before the folder is complete, more writes what else
// the kind keeps there. A failure leaves no folder.
func initPlatform(dir string, tee attest.Kind, status string, now time.Time, more func(*Platform) error) (*Platform, error) {
	if status == "" {
		status = "UpToDate"
	}
	if !slices.Contains(Statuses, status) {
		return nil, fmt.Errorf("unknown TCB status %q (want one of %v)", status, Statuses)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, err
	}
	p := &Platform{Dir: dir, Settings: Settings{TEE: tee, TCBStatus: status, Created: now.UTC().Truncate(time.Second)}}
	var fmspc [6]byte
	rand.Read(fmspc[:])
	p.Settings.FMSPC = fmt.Sprintf("%X", fmspc)
	err := p.issue(fmspc)
	if err == nil && more != nil {
		err = more(p)
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return p, nil
}

// issue makes the platform's keys, certificates and collateral and writes them to its folder.
func (p *Platform) issue(fmspc [6]byte) error {
	keys := []**ecdsa.PrivateKey{&p.rootKey, &p.pckCAKey, &p.pckKey, &p.signerKey, &p.attestationKey}
	for _, k := range keys {
		var err error
		if *k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			return err
		}
	}
	now := p.Settings.Created
	ext := sgx.PCKExtension{TCBComponents: platformTCB, PCESVN: platformPCESVN, FMSPC: fmspc}
	rand.Read(ext.PPID[:])
	sgxExt, err := ext.Marshal()
	if err != nil {
		return err
	}
	var errs []error
	issue := func(tmpl *x509.Certificate, parent *x509.Certificate, key, parentKey *ecdsa.PrivateKey) *x509.Certificate {
		c, err := issueCert(tmpl, parent, &key.PublicKey, parentKey, now)
		errs = append(errs, err)
		return c
	}
	// A TDX platform's certificates have the common names and extensions of Intel's, as
	// verifiers of TD quotes may require (go-tdx-guest does); their organization still says
	// what they are.
	prefix := "ppml Simulated SGX "
	if p.Settings.isTDX() {
		prefix = "Intel SGX "
	}
	root := caTemplate(prefix+"Root CA", 1)
	root.CRLDistributionPoints = []string{simRootCRL}
	p.root = issue(root, nil, p.rootKey, p.rootKey)
	p.pckCA = issue(caTemplate(prefix+"PCK Platform CA", 0), p.root, p.pckCAKey, p.rootKey)
	p.signer = issue(leafTemplate(prefix+"TCB Signing"), p.root, p.signerKey, p.rootKey)
	pck := leafTemplate(prefix + "PCK Certificate")
	pck.ExtraExtensions = []pkix.Extension{{Id: sgx.OIDSGXExtensions, Value: sgxExt}}
	pck.CRLDistributionPoints = []string{simPCKCRL}
	pck.SubjectKeyId = keyID(p.pckKey)
	p.pck = issue(pck, p.pckCA, p.pckKey, p.pckCAKey)
	errs = append(errs, p.certifyAttestationKey())
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for name, c := range map[string]*x509.Certificate{rootCertFile: p.root, pckCACertFile: p.pckCA, pckCertFile: p.pck, signerCertFile: p.signer} {
		errs = append(errs, writePEM(filepath.Join(p.Dir, name), "CERTIFICATE", c.Raw))
	}
	for name, k := range map[string]*ecdsa.PrivateKey{rootKeyFile: p.rootKey, pckCAKeyFile: p.pckCAKey, pckKeyFile: p.pckKey, signerKeyFile: p.signerKey, attestKeyFile: p.attestationKey} {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		errs = append(errs, err, writePEM(filepath.Join(p.Dir, name), "PRIVATE KEY", der))
	}
	errs = append(errs, os.WriteFile(filepath.Join(p.Dir, qeReportSigFile), p.qeReportSignature[:], 0o600))
	settings, _ := json.MarshalIndent(p.Settings, "", "  ")
	errs = append(errs, os.WriteFile(filepath.Join(p.Dir, platformFile), append(settings, '\n'), 0o600))
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return p.writeCollateral(nil)
}

// Where the platform's certificates say their CRLs are. Nothing is fetched from there: the
// CRLs are in the collateral folder, and verifiers find them by these names.
const (
	simRootCRL = "https://ppml.invalid/simulated/root-ca-crl.der"
	simPCKCRL  = "https://ppml.invalid/simulated/pck-crl.der"
)

// keyID is a subject key identifier for key: SHA-1 of its public point, as RFC 5280 suggests.
func keyID(key *ecdsa.PrivateKey) []byte {
	pub, _ := key.PublicKey.ECDH() // a P-256 key made here always converts
	id := sha1.Sum(pub.Bytes())
	return id[:]
}

func caTemplate(name string, pathLen int) *x509.Certificate {
	return &x509.Certificate{
		Subject:               pkix.Name{CommonName: name, Organization: []string{"ppml simulation (not Intel)"}},
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLen:            pathLen,
		MaxPathLenZero:        pathLen == 0,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
}

func leafTemplate(name string) *x509.Certificate {
	return &x509.Certificate{
		Subject:               pkix.Name{CommonName: name, Organization: []string{"ppml simulation (not Intel)"}},
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment,
	}
}

// issueCert issues the certificate tmpl of the public key pub, signed by parentKey as parent
// (self-signed where parent is nil), valid from an hour before now for certValidity.
func issueCert(tmpl, parent *x509.Certificate, pub any, parentKey crypto.Signer, now time.Time) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 159))
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore, tmpl.NotAfter = now.Add(-time.Hour), now.Add(certValidity)
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

func writePEM(name, typ string, der []byte) error {
	return os.WriteFile(name, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}

// Load reads the platform in dir.
func Load(dir string) (*Platform, error) {
	p := &Platform{Dir: dir}
	b, err := os.ReadFile(filepath.Join(dir, platformFile))
	if err != nil {
		return nil, fmt.Errorf("simulated platform %s: %w (make one with ppml sim init)", dir, err)
	}
	if err := json.Unmarshal(b, &p.Settings); err != nil {
		return nil, fmt.Errorf("simulated platform %s: %s: %w", dir, platformFile, err)
	}
	if p.Settings.TEE == attest.SNP {
		return nil, fmt.Errorf("simulated platform %s is an SEV-SNP platform, not an Intel one (SGX or TDX)", dir)
	}
	var errs []error
	for name, c := range map[string]**x509.Certificate{rootCertFile: &p.root, pckCACertFile: &p.pckCA, pckCertFile: &p.pck, signerCertFile: &p.signer} {
		var err error
		*c, err = readCert(filepath.Join(dir, name))
		errs = append(errs, err)
	}
	for name, k := range map[string]**ecdsa.PrivateKey{rootKeyFile: &p.rootKey, pckCAKeyFile: &p.pckCAKey, pckKeyFile: &p.pckKey, signerKeyFile: &p.signerKey, attestKeyFile: &p.attestationKey} {
		var err error
		*k, err = readKey(filepath.Join(dir, name))
		errs = append(errs, err)
	}
	sig, err := os.ReadFile(filepath.Join(dir, qeReportSigFile))
	if err == nil && len(sig) != len(p.qeReportSignature) {
		err = fmt.Errorf("%s: %d bytes, want %d", qeReportSigFile, len(sig), len(p.qeReportSignature))
	}
	copy(p.qeReportSignature[:], sig)
	errs = append(errs, err)
	err = errors.Join(errs...)
	if err == nil && !p.attestationKeyCertified() {
		err = fmt.Errorf("%s is not the signature of the QE report by the PCK certificate's key", qeReportSigFile)
	}
	if err != nil {
		return nil, fmt.Errorf("simulated platform %s: %w (remove the folder and make a new one with ppml sim init)", dir, err)
	}
	return p, nil
}

func readPEM(name, typ string) ([]byte, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != typ {
		return nil, fmt.Errorf("%s: no PEM %s", name, typ)
	}
	return block.Bytes, nil
}

func readCert(name string) (*x509.Certificate, error) {
	der, err := readPEM(name, "CERTIFICATE")
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

func readKey(name string) (*ecdsa.PrivateKey, error) {
	der, err := readPEM(name, "PRIVATE KEY")
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	ec, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an ECDSA key", name)
	}
	return ec, nil
}

// Roots returns a pool holding the platform's root CA: trust it to accept its quotes.
func (p *Platform) Roots() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.root)
	return pool
}

// Verifier returns a verifier that trusts this platform, and only it, as of its collateral.
func (p *Platform) Verifier() (attest.Verifier, error) { return LoadVerifier(p.Dir) }

// LoadVerifier returns a verifier that trusts the platform in dir, and only it: of SGX quotes,
// of TDX quotes for a TDX platform (see [Settings.TEE]), of SEV-SNP reports for an SEV-SNP one
// (SNPPlatform). It reads the
// platform's root certificate and collateral, none of its private keys: a relying party needs
// only those files.
func LoadVerifier(dir string) (attest.Verifier, error) {
	fail := func(err error) (attest.Verifier, error) {
		return nil, fmt.Errorf("simulated platform %s: %w", dir, err)
	}
	b, err := os.ReadFile(filepath.Join(dir, platformFile))
	if err != nil {
		return fail(err)
	}
	var settings Settings
	if err := json.Unmarshal(b, &settings); err != nil {
		return fail(err)
	}
	if settings.TEE == attest.SNP {
		return loadSNPVerifier(dir)
	}
	root, err := readCert(filepath.Join(dir, rootCertFile))
	if err != nil {
		return fail(err)
	}
	bundle, err := collateral.ReadDir(filepath.Join(dir, collateralDir), settings.FMSPC)
	if err != nil {
		return fail(err)
	}
	if settings.isTDX() {
		v, err := newTDVerifier(root, bundle)
		if err != nil {
			return fail(err)
		}
		return v, nil
	}
	roots := x509.NewCertPool()
	roots.AddCert(root)
	v, err := sgx.NewVerifier(sgx.Options{Roots: roots, Collateral: bundle})
	if err != nil {
		return fail(err)
	}
	return verifier{v}, nil
}

// Collateral reads the platform's collateral.
func (p *Platform) Collateral() (*collateral.Bundle, error) {
	return collateral.ReadDir(filepath.Join(p.Dir, collateralDir), p.Settings.FMSPC)
}
