package provision

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
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
