package manifest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"strings"
	"testing"
)

const signedManifest = minimal + `sgx.isvprodid = 5
sgx.isvsvn = 2
sgx.trusted_files = [{ uri = "file:/bin/app", sha256 = "1111111111111111111111111111111111111111111111111111111111111111" }]
`

func TestSignRoundTrip(t *testing.T) {
	ed, edPEM, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if parsed, err := ParseKey(edPEM); err != nil || !parsed.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(ed.Public()) {
		t.Fatalf("ParseKey(GenerateKey()): %v", err)
	}
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	m := mustParse(t, signedManifest)
	for _, key := range []crypto.Signer{ed, p256} {
		sig, err := Sign(m, key)
		if err != nil {
			t.Fatal(err)
		}
		parsed, err := ParseSignature(sig.Marshal())
		if err != nil {
			t.Fatalf("%T: ParseSignature: %v\n%s", key, err, sig.Marshal())
		}
		if err := parsed.Verify(m); err != nil {
			t.Errorf("%T: Verify: %v", key, err)
		}
		der, _ := x509.MarshalPKIXPublicKey(key.Public())
		mr, err := MRSigner(key.Public())
		if err != nil || parsed.MRSigner() != sha256.Sum256(der) || mr != parsed.MRSigner() {
			t.Errorf("%T: MRSIGNER %x, MRSigner %x (%v), want %x", key, parsed.MRSigner(), mr, err, sha256.Sum256(der))
		}
		if parsed.MREnclave != Measure(m) || parsed.ISVProdID != 5 || parsed.ISVSVN != 2 || parsed.Debug {
			t.Errorf("%T: signature %+v", key, parsed)
		}
	}
}

func TestSignatureTampering(t *testing.T) {
	key, _, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	m := mustParse(t, signedManifest)
	sig, err := Sign(m, key)
	if err != nil {
		t.Fatal(err)
	}
	edit := func(change func(f *signatureFile)) []byte {
		var f signatureFile
		if err := json.Unmarshal(sig.Marshal(), &f); err != nil {
			t.Fatal(err)
		}
		change(&f)
		b, _ := json.Marshal(f)
		return b
	}
	other, _, _ := GenerateKey()
	otherSig, _ := Sign(m, other)
	for name, tc := range map[string]struct {
		file []byte
		want string
	}{
		"mrenclave":  {edit(func(f *signatureFile) { f.MREnclave = strings.Repeat("00", 32) }), "does not verify"},
		"isvsvn":     {edit(func(f *signatureFile) { f.ISVSVN = 3 }), "does not verify"},
		"isvprodid":  {edit(func(f *signatureFile) { f.ISVProdID = 6 }), "does not verify"},
		"debug":      {edit(func(f *signatureFile) { f.Debug = true }), "does not verify"},
		"signature":  {edit(func(f *signatureFile) { f.Signature = strings.Repeat("00", 64) }), "does not verify"},
		"public key": {edit(func(f *signatureFile) { f.PublicKey = hex.EncodeToString(otherSig.PublicKey) }), "does not verify"},
		"format":     {edit(func(f *signatureFile) { f.Format = "ppml-manifest-signature/2" }), `signature format "ppml-manifest-signature/2"`},
		"hex":        {edit(func(f *signatureFile) { f.MREnclave = "xyz" }), "mrenclave is not 32 bytes in hex"},
		"bad key":    {edit(func(f *signatureFile) { f.PublicKey = "00" }), "public key"},
		"extra":      {[]byte(`{"format": "ppml-manifest-signature/1", "mrsigner": "00"}`), "not a ppml manifest signature"},
		"not json":   {[]byte("SIGSTRUCT"), "not a ppml manifest signature"},
	} {
		if _, err := ParseSignature(tc.file); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: ParseSignature: %v, want an error containing %q", name, err, tc.want)
		}
	}

	// A valid signature of another manifest.
	for _, change := range [][2]string{{"isvsvn = 2", "isvsvn = 3"}, {"isvsvn = 2", "isvsvn = 2\nsgx.debug = true"}, {"/bin/app\"\n", "/bin/app2\"\n"}} {
		changed := mustParse(t, strings.Replace(signedManifest, change[0], change[1], 1))
		if err := sig.Verify(changed); err == nil {
			t.Errorf("the signature verifies the manifest with %s", change)
		}
	}
	if err := sig.Verify(mustParse(t, signedManifest)); err != nil {
		t.Errorf("Verify of the same manifest: %v", err)
	}
}

func TestSignNeedsHashes(t *testing.T) {
	key, _, _ := GenerateKey()
	m := mustParse(t, minimal+`sgx.trusted_files = ["file:/bin/app"]`)
	if _, err := Sign(m, key); err == nil || !strings.Contains(err.Error(), "file:/bin/app has no hash") {
		t.Errorf("Sign of an unhashed manifest: %v", err)
	}
}

func TestParseKey(t *testing.T) {
	encode := func(typ string, der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}) }
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 1024)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p384DER, _ := x509.MarshalPKCS8PrivateKey(p384)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sec1, _ := x509.MarshalECPrivateKey(p256)
	if _, err := ParseKey(encode("EC PRIVATE KEY", sec1)); err != nil {
		t.Errorf("a SEC 1 P-256 key: %v", err)
	}
	for name, tc := range map[string]struct {
		pem  []byte
		want string
	}{
		"gramine's key": {encode("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey)), "an RSA key (Gramine's enclave key?): a manifest signing key is Ed25519 or ECDSA P-256"},
		"P-384":         {encode("PRIVATE KEY", p384DER), "a manifest signing key is Ed25519 or ECDSA P-256"},
		"certificate":   {encode("CERTIFICATE", []byte{1}), `a PEM "CERTIFICATE"`},
		"garbage":       {encode("PRIVATE KEY", []byte{1}), "asn1"},
		"not PEM":       {[]byte("key"), "no PEM key found"},
	} {
		if _, err := ParseKey(tc.pem); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", name, err, tc.want)
		}
	}
	if _, err := Sign(mustParse(t, signedManifest), p384); err == nil {
		t.Error("Sign with a P-384 key succeeded")
	}
}
