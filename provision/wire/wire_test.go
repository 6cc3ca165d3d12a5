package wire

import (
	"bytes"
	"encoding/hex"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// TestGramineWire checks the exchange byte for byte against what libsecret_prov_attest.so sends
// and expects (gramine-compat.md §3.2).
func TestGramineWire(t *testing.T) {
	sent := []byte("SECRET_PROVISION_RA_TLS_REQUEST_V1\x00")
	if len(sent) != 35 {
		t.Fatal("Gramine's request is 35 bytes")
	}
	req, err := ReadRequest(bytes.NewReader(sent))
	if err != nil || !req.Gramine {
		t.Fatalf("readRequest: %+v, %v", req, err)
	}
	key := []byte("0123456789abcdef")
	got := Grant(req, [][]byte{key})
	want, _ := hex.DecodeString(hex.EncodeToString([]byte("SECRET_PROVISION_RA_TLS_RESPONSE_V1:\x00")) + "00000010" + hex.EncodeToString(key))
	if !bytes.Equal(got, want) {
		t.Fatalf("response\n%x\nwant\n%x", got, want)
	}
	secrets, err := ReadResponse(bytes.NewReader(got), req)
	if err != nil || !bytes.Equal(secrets[0], key) {
		t.Fatalf("readResponse: %x, %v", secrets, err)
	}
	if Refusal(req, "no") != nil {
		t.Error("a Gramine client must get no refusal message, only a closed connection")
	}
	if m, _ := req.Marshal(); !bytes.Equal(m, sent) {
		t.Errorf("marshal: %q", m)
	}
}

func TestKeysWire(t *testing.T) {
	req := &Request{Keys: []string{"model", "data"}}
	b, err := req.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ReadRequest(bytes.NewReader(b))
	if err != nil || got.Gramine || strings.Join(got.Keys, ",") != "model,data" {
		t.Fatalf("readRequest: %+v, %v", got, err)
	}
	secrets, err := ReadResponse(bytes.NewReader(Grant(req, [][]byte{[]byte("k1"), []byte("key2")})), req)
	if err != nil || string(secrets[0]) != "k1" || string(secrets[1]) != "key2" {
		t.Fatalf("granted: %q, %v", secrets, err)
	}
	_, err = ReadResponse(bytes.NewReader(Refusal(req, "mrenclave is not the one allowed")), req)
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "mrenclave is not the one allowed") {
		t.Fatalf("refused: %v", err)
	}
}

func TestBadRequests(t *testing.T) {
	for name, b := range map[string]string{
		"empty":       "",
		"short":       "SECRET_PROVISION",
		"other magic": "GET / HTTP/1.1\r\nHost: x\r\n\r\n........",
		"no count":    keysRequest,
		"zero keys":   keysRequest + "\x00",
		"too many":    keysRequest + "\x21",
		"empty name":  keysRequest + "\x01\x00",
		"cut name":    keysRequest + "\x01\x05abc",
	} {
		if _, err := ReadRequest(strings.NewReader(b)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := (&Request{Keys: []string{strings.Repeat("k", 65)}}).Marshal(); err == nil {
		t.Error("a 65-byte key name was accepted")
	}
}

func FuzzReadRequest(f *testing.F) {
	f.Add([]byte(gramineRequest))
	b, _ := (&Request{Keys: []string{"default", "model"}}).Marshal()
	f.Add(b)
	b, _ = (&Request{Join: &Join{Job: "digits", Endpoint: netip.MustParseAddrPort("192.0.2.1:51820")}}).Marshal()
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := ReadRequest(bytes.NewReader(b))
		if err != nil {
			return
		}
		m, err := req.Marshal()
		if err != nil || !bytes.HasPrefix(b, m) {
			t.Fatalf("request %+v does not marshal back to the input: %x", req, m)
		}
	})
}

func FuzzReadResponse(f *testing.F) {
	req := &Request{Keys: []string{"a", "b"}}
	f.Add(Grant(req, [][]byte{[]byte("1"), []byte("22")}), false)
	f.Add(Refusal(req, "why"), false)
	f.Add(Grant(&Request{Gramine: true}, [][]byte{make([]byte, 16)}), true)
	f.Fuzz(func(t *testing.T, b []byte, gramine bool) {
		r := req
		if gramine {
			r = &Request{Gramine: true}
		}
		secrets, err := ReadResponse(bytes.NewReader(b), r)
		if err == nil && len(secrets) != map[bool]int{true: 1, false: 2}[gramine] {
			t.Fatalf("%d secrets", len(secrets))
		}
	})
}
