package nvidia

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"
)

// The fetcher against a server that answers as NVIDIA's RIM and OCSP services do.
func TestFetcher(t *testing.T) {
	s := newRIMSetup(t)
	g := s.gpu
	ev, _ := ParseEvidence(s.ev)
	driverID, vbiosID := RIMIDs(ev, "Hopper")
	if driverID != "NV_GPU_DRIVER_GH100_550.90.07" || vbiosID != "NV_GPU_VBIOS_1010_0200_882_96009F0001" {
		t.Fatalf("ids %s %s", driverID, vbiosID)
	}
	var ocspCalls int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/v1/rim/"+driverID:
			sum := sha256.Sum256(s.driver)
			json.NewEncoder(w).Encode(map[string]string{"id": driverID, "rim": base64.StdEncoding.EncodeToString(s.driver), "sha256": hex.EncodeToString(sum[:]), "rim_format": "TCG"})
		case r.Method == http.MethodGet && r.URL.Path == "/v1/rim/wrong-sum":
			json.NewEncoder(w).Encode(map[string]string{"id": "wrong-sum", "rim": base64.StdEncoding.EncodeToString(s.driver), "sha256": strings.Repeat("0", 64)})
		case r.Method == http.MethodPost && r.URL.Path == "/ocsp" && r.Header.Get("Content-Type") == "application/ocsp-request":
			ocspCalls++
			body, _ := io.ReadAll(r.Body)
			req, err := ocsp.ParseRequest(body)
			if err != nil || req.SerialNumber.Cmp(g.ica.cert.SerialNumber) != 0 {
				http.Error(w, "unknown certificate", http.StatusBadRequest)
				return
			}
			w.Write(ocspFor(t, g.ica.cert, g.root, ocsp.Good, 0, tNow.Add(-time.Hour), tNow.Add(time.Hour)))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	f := &Fetcher{Client: srv.Client(), RIMURL: srv.URL + "/v1/rim/", OCSPURL: srv.URL + "/ocsp"}
	ctx := context.Background()
	got, err := f.RIM(ctx, driverID)
	if err != nil || string(got) != string(s.driver) {
		t.Fatalf("RIM: %v", err)
	}
	if _, err := f.RIM(ctx, "wrong-sum"); !errors.Is(err, ErrMismatch) {
		t.Errorf("wrong sha256: %v", err)
	}
	if _, err := f.RIM(ctx, vbiosID); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("missing RIM: %v", err)
	}
	chain, _ := ParseChain(g.chainPEM())
	responses, err := f.OCSPChain(ctx, chain, 1)
	if err != nil || len(responses) != 1 || ocspCalls != 1 {
		t.Fatalf("OCSP: %v (%d responses)", err, len(responses))
	}
	// What the fetcher got verifies offline.
	v, err := Verify(s.ev, g.chainPEM(), Options{Time: tNow, Nonce: s.nonce, DeviceRoots: s.opts.DeviceRoots, OCSP: memOCSP(responses)})
	if err != nil || v.Revocation != "good" {
		t.Fatalf("verify with fetched OCSP: %v", err)
	}
	if _, err := f.OCSPChain(ctx, chain, 0); err == nil {
		t.Error("the server refused the leaf, the fetcher did not say so")
	}
}
