package ratls

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/ppml/ppml/attest"
)

var testSPKI = []byte("a SubjectPublicKeyInfo")

// compact removes the spaces that the hex strings of the tests carry for reading.
func compact(s string) string { return strings.ReplaceAll(s, " ", "") }

// cborHex decodes hex written with spaces for reading.
func cborHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(compact(s))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pubKeyHashClaim returns the hex of the CBOR bytes bstr([alg, bstr(h)]) for a hash of up to
// 255 bytes.
func pubKeyHashClaim(alg byte, h []byte) string {
	entry := append([]byte{0x82, alg, 0x58, byte(len(h))}, h...)
	return hex.EncodeToString(append([]byte{0x58, byte(len(entry))}, entry...))
}

const pubKeyHashKey = "6b 7075626b65792d68617368" // tstr "pubkey-hash"

func TestClaims(t *testing.T) {
	s256 := sha256.Sum256(testSPKI)
	s384 := sha512.Sum384(testSPKI)
	s512 := sha512.Sum512(testSPKI)
	good := pubKeyHashClaim(1, s256[:])
	for _, tc := range []struct {
		name, claims string
		want         error
	}{
		{"sha-256", "a1" + pubKeyHashKey + good, nil},
		{"sha-384", "a1" + pubKeyHashKey + pubKeyHashClaim(7, s384[:]), nil},
		{"sha-512", "a1" + pubKeyHashKey + pubKeyHashClaim(8, s512[:]), nil},
		{"other claims ignored", "a3" + pubKeyHashKey + good + "65 6b65795f30 48 76616c75655f3000" + "65 6b65795f31 01", nil},
		{"wrong hash", "a1" + pubKeyHashKey + pubKeyHashClaim(1, s512[:32]), ErrBinding},
		{"hash of another length", "a1" + pubKeyHashKey + pubKeyHashClaim(1, s384[:]), ErrBinding},
		{"no pubkey-hash", "a1 65 6e6f6e6365 41 00", ErrBinding},
		{"unknown algorithm", "a1" + pubKeyHashKey + pubKeyHashClaim(2, s256[:]), ErrUnsupported},
		{"duplicate claim", "a2" + pubKeyHashKey + good + pubKeyHashKey + good, ErrMalformed},
		{"indefinite map", "bf" + pubKeyHashKey + good + "ff", ErrMalformed},
		{"empty claim name", "a2" + pubKeyHashKey + good + "60 40", ErrMalformed},
		{"integer claim name", "a2" + pubKeyHashKey + good + "01 40", ErrMalformed},
		{"byte string claim name", "a2" + pubKeyHashKey + good + "41 61 40", ErrMalformed},
		{"not a map", "80", ErrMalformed},
		{"empty", "", ErrMalformed},
		{"trailing byte", "a1" + pubKeyHashKey + good + "00", ErrMalformed},
		{"truncated", compact("a1" + pubKeyHashKey + good)[:40], ErrMalformed},
		{"value not a byte string", "a1" + pubKeyHashKey + "82 01 5820" + hex.EncodeToString(s256[:]), ErrMalformed},
		{"hash entry of 3", "a1" + pubKeyHashKey + "5825 83 01 5820" + hex.EncodeToString(s256[:]) + "00", ErrMalformed},
		{"hash as text", "a1" + pubKeyHashKey + "5824 82 01 7820" + hex.EncodeToString(s256[:]), ErrMalformed},
		{"negative algorithm", "a1" + pubKeyHashKey + "5824 82 20 5820" + hex.EncodeToString(s256[:]), ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkPubKeyHash(cborHex(t, tc.claims), testSPKI)
			if tc.want == nil && err != nil || !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestClaimsBuffer(t *testing.T) {
	claims, err := claimsBuffer(testSPKI)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(testSPKI)
	if want := cborHex(t, "a1"+pubKeyHashKey+pubKeyHashClaim(1, h[:])); !slices.Equal(claims, want) || len(claims) != 51 {
		t.Errorf("claims %x, want %x (51 bytes)", claims, want)
	}
}

func TestParseTagged(t *testing.T) {
	h := sha256.Sum256(testSPKI)
	claims := "a1" + pubKeyHashKey + pubKeyHashClaim(1, h[:])
	claimsBstr := "5833" + claims
	sgxV3 := "48 0300020000000000" // 8 bytes: version 3
	sgxV4 := "48 0400020000000000" // version 4, TEE type 0
	tdxV4 := "48 0400020081000000" // version 4, TEE type 0x81
	tdxV5 := "48 0500020081000000" // version 5, TEE type 0x81
	oddV4 := "48 0400020042000000" // version 4, TEE type 0x42
	oldV2 := "48 0200020000000000" // version 2
	for _, tc := range []struct {
		name, ext string
		kind      attest.Kind
		want      error
	}{
		{"sgx v3", "d9ea60 82" + sgxV3 + claimsBstr, attest.SGX, nil},
		{"sgx v4", "d9ea60 82" + sgxV4 + claimsBstr, attest.SGX, nil},
		{"tdx v4", "d9ea60 82" + tdxV4 + claimsBstr, attest.TDX, nil},
		{"tdx v5", "d9ea60 82" + tdxV5 + claimsBstr, attest.TDX, nil},
		{"snp", "da001a7504 82 48 0102030405060708" + claimsBstr, attest.SNP, nil},
		{"unknown TEE type", "d9ea60 82" + oddV4 + claimsBstr, "", ErrUnsupported},
		{"quote version 2", "d9ea60 82" + oldV2 + claimsBstr, "", ErrUnsupported},
		{"short quote", "d9ea60 82 43 030002" + claimsBstr, "", ErrMalformed},
		{"Intel TEE report tag", "d9ea61 82" + sgxV3 + claimsBstr, "", ErrUnsupported},
		{"no tag", "82" + sgxV3 + claimsBstr, "", ErrMalformed},
		{"nested tag", "d9ea60 d9ea60 82" + sgxV3 + claimsBstr, "", ErrMalformed},
		{"array of 3", "d9ea60 83" + sgxV3 + claimsBstr + "40", "", ErrMalformed},
		{"array of 1", "d9ea60 81" + sgxV3, "", ErrMalformed},
		{"indefinite array", "d9ea60 9f" + sgxV3 + claimsBstr + "ff", "", ErrMalformed},
		{"indefinite quote", "d9ea60 82 5f" + sgxV3 + "ff" + claimsBstr, "", ErrMalformed},
		{"quote as text", "d9ea60 82 68 0300020000000000" + claimsBstr, "", ErrMalformed},
		{"claims as map", "d9ea60 82" + sgxV3 + claims, "", ErrMalformed},
		{"trailing byte", "d9ea60 82" + sgxV3 + claimsBstr + "00", "", ErrMalformed},
		{"truncated", compact("d9ea60 82" + sgxV3 + claimsBstr)[:60], "", ErrMalformed},
		{"claims for another key", "d9ea60 82" + sgxV3 + "5833 a1" + pubKeyHashKey + pubKeyHashClaim(1, make([]byte, 32)), "", ErrBinding},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := parseTagged(cborHex(t, tc.ext), testSPKI)
			if tc.want != nil || err != nil {
				if !errors.Is(err, tc.want) {
					t.Errorf("err = %v, want %v", err, tc.want)
				}
				return
			}
			if ev.Kind != tc.kind || ev.Format != Tagged || ev.Binding != sha256.Sum256(cborHex(t, claims)) || len(ev.Data) != 8 {
				t.Errorf("evidence %+v, want kind %s binding SHA-256(claims)", ev, tc.kind)
			}
		})
	}
	big := make([]byte, maxEvidence+1)
	if _, err := parseTagged(big, testSPKI); !errors.Is(err, ErrMalformed) {
		t.Errorf("oversized extension: err = %v", err)
	}
}

func TestFormatString(t *testing.T) {
	for f, want := range map[Format]string{Tagged: "TCG tagged evidence", Legacy: "legacy Gramine quote extension", 9: "Format(9)"} {
		if f.String() != want {
			t.Errorf("%d: %q, want %q", int(f), f.String(), want)
		}
	}
}
