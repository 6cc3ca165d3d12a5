package provision

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ppml/ppml/store"
)

// Files that Setup writes in a server folder.
const (
	SetupCACert     = "ca.crt"     // give this to workloads: SECRET_PROVISION_CA_CHAIN_PATH
	SetupCAKey      = "ca.key"     // keep it offline
	SetupServerCert = "server.crt" // tls_cert
	SetupServerKey  = "server.key" // tls_key
	SetupMasterKey  = "master.key" // master_key_file
)

// Setup writes what a new server needs into dir, which must not hold these files: a certificate
// authority, a server certificate it signs for hosts (names or IP addresses; the first is also
// the common name, which Gramine's client checks when the certificate has no alternative names)
// and a master key.
func Setup(dir string, hosts []string, now time.Time) error {
	if len(hosts) == 0 {
		return fmt.Errorf("name at least one host the server is reached by")
	}
	for _, name := range []string{SetupCACert, SetupCAKey, SetupServerCert, SetupServerKey, SetupMasterKey} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return fmt.Errorf("%s already exists: not replacing it", filepath.Join(dir, name))
		}
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	ca := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "ppml provisioning CA"},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := sign(ca, ca, &caKey.PublicKey, caKey, now)
	if err != nil {
		return err
	}
	if ca, err = x509.ParseCertificate(caDER); err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	leaf := &x509.Certificate{
		Subject:     pkix.Name{CommonName: hosts[0]},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			leaf.IPAddresses = append(leaf.IPAddresses, ip)
		} else {
			leaf.DNSNames = append(leaf.DNSNames, h)
		}
	}
	leafDER, err := sign(leaf, ca, &key.PublicKey, caKey, now)
	if err != nil {
		return err
	}
	caKeyDER, err := x509.MarshalPKCS8PrivateKey(caKey)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	// Each file is created new (O_EXCL); if one fails, those made before it go too.
	var made []string
	undo := func(err error) error {
		for _, name := range made {
			os.Remove(name)
		}
		return err
	}
	for _, f := range []struct {
		name, typ string
		der       []byte
		mode      os.FileMode
	}{
		{SetupCACert, "CERTIFICATE", caDER, 0o644},
		{SetupServerCert, "CERTIFICATE", leafDER, 0o644},
		{SetupCAKey, "PRIVATE KEY", caKeyDER, 0o600},
		{SetupServerKey, "PRIVATE KEY", keyDER, 0o600},
	} {
		name := filepath.Join(dir, f.name)
		file, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, f.mode)
		if err != nil {
			return undo(err)
		}
		made = append(made, name)
		_, err = file.Write(pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der}))
		if cerr := file.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return undo(err)
		}
	}
	if err := store.NewMasterKey(filepath.Join(dir, SetupMasterKey)); err != nil {
		return undo(err)
	}
	return nil
}

func sign(tmpl, parent *x509.Certificate, pub *ecdsa.PublicKey, signer *ecdsa.PrivateKey, now time.Time) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore, tmpl.NotAfter = now.Add(-time.Hour), now.AddDate(10, 0, 0)
	return x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
}

// SetupConfig is the name of the configuration file that WriteConfig writes in a server folder.
const SetupConfig = "server.toml"

// WriteConfig writes a configuration for the server that Setup made in dir, which must not have
// one yet: it listens on listen and trusts the simulated platforms simPlatforms (folders,
// relative to dir or absolute). It admits no workload yet: AddWorkload adds them.
func WriteConfig(dir, listen string, simPlatforms []string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# The provisioning server's configuration (docs/provisioning.md).\n")
	fmt.Fprintf(&b, "listen = %q\ntls_cert = %q\ntls_key = %q\nstore = %q\nmaster_key_file = %q\n",
		listen, SetupServerCert, SetupServerKey, "sqlite:ppml.db", SetupMasterKey)
	if len(simPlatforms) > 0 {
		fmt.Fprintf(&b, "sim_platforms = %s  # development only\n", tomlStrings(simPlatforms))
	}
	b.WriteString(`# collateral = "https://api.trustedservices.intel.com"   # genuine SGX and TDX platforms
# snp = true                                               # SEV-SNP guests

# Workloads: ppml serve add-workload --config THIS_FILE MANIFEST, or [[workload]] by hand.
`)
	f, err := os.OpenFile(filepath.Join(dir, SetupConfig), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.WriteString(b.String())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// AddWorkload adds w to the configuration file at path, as a [[workload]] table at its end. The
// file is replaced only if the result is a valid configuration (a workload of that name is not
// there yet, w's values are well formed), and atomically.
func AddWorkload(path string, w Workload) error {
	old, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	text := append(bytes.TrimRight(old, "\n"), "\n\n"...)
	text = append(text, w.toml()...)
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(text)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if _, err := LoadConfig(tmp.Name()); err != nil {
		return fmt.Errorf("%s with workload %q: %w", path, w.Name, errors.Unwrap(err))
	}
	if info, err := os.Stat(path); err == nil {
		os.Chmod(tmp.Name(), info.Mode().Perm())
	}
	return os.Rename(tmp.Name(), path)
}

// toml returns w as a [[workload]] table, with the values it sets.
func (w *Workload) toml() string {
	var b strings.Builder
	fmt.Fprintf(&b, "[[workload]]\nname = %q\ntee = %q\n", w.Name, w.TEE)
	if len(w.MREnclave) > 0 {
		fmt.Fprintf(&b, "mrenclave = %s\n", tomlStrings(w.MREnclave))
	}
	if w.SigFile != "" {
		fmt.Fprintf(&b, "sig_file = %q\n", w.SigFile)
	}
	fmt.Fprintf(&b, "allow_debug = %t\n", w.AllowDebug)
	if w.AllowSimulated {
		b.WriteString("allow_simulated = true   # development only: admits the simulated platforms' evidence\n")
	}
	accept := w.AcceptTCB
	if len(accept) == 0 {
		accept = []string{"UpToDate"}
	}
	fmt.Fprintf(&b, "accept_tcb = %s\nkeys = %s\n", tomlStrings(accept), tomlStrings(w.Keys))
	return b.String()
}

// tomlStrings writes a TOML array of strings.
func tomlStrings(values []string) string {
	quoted := make([]string, len(values))
	for i, v := range values {
		quoted[i] = strconv.Quote(v)
	}
	return "[" + strings.Join(quoted, ", ") + "]"
}
