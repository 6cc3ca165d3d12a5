package nvidia

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"golang.org/x/crypto/ocsp"
)

// NVIDIA's services, as nvtrust's verifier uses them.
const (
	DefaultRIMURL  = "https://rim.attestation.nvidia.com/v1/rim/"
	DefaultOCSPURL = "https://ocsp.ndis.nvidia.com/"
)

// Fetcher gets RIMs and OCSP responses from NVIDIA's services (or a mirror), to be kept in
// folders and used offline by [Verify]. It checks what it gets parses, not that it is trusted.
type Fetcher struct {
	Client  *http.Client // nil: http.DefaultClient
	RIMURL  string       // "": DefaultRIMURL; the RIM ID is appended
	OCSPURL string       // "": DefaultOCSPURL
}

const maxResponse = 8 << 20

// RIMIDs returns the IDs of the driver and VBIOS RIMs for the GPU that produced ev, as NVIDIA's
// RIM service names them (NV_GPU_DRIVER_GH100_550.90.07, NV_GPU_VBIOS_1010_0200_882_96009F0001).
func RIMIDs(ev *Evidence, arch string) (driver, vbios string) {
	chip := "GH100"
	if arch == "Blackwell" {
		chip = "GB100"
	}
	o := &ev.Response.Opaque
	driver = "NV_GPU_DRIVER_" + chip + "_" + o.DriverVersion()
	vbios = strings.ToUpper("NV_GPU_VBIOS_" + o.String(OpaqueProject) + "_" + o.String(OpaqueProjectSKU) + "_" +
		o.String(OpaqueChipSKU) + "_" + strings.ReplaceAll(o.VBIOSVersion(), ".", ""))
	return driver, vbios
}

// RIM fetches the RIM with the given ID and returns its XML.
func (f *Fetcher) RIM(ctx context.Context, id string) ([]byte, error) {
	base := f.RIMURL
	if base == "" {
		base = DefaultRIMURL
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+url.PathEscape(id), nil)
	if err != nil {
		return nil, err
	}
	body, err := f.do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch RIM %s: %w", id, err)
	}
	var resp struct {
		ID     string `json:"id"`
		RIM    string `json:"rim"`
		SHA256 string `json:"sha256"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		return nil, fmt.Errorf("fetch RIM %s: %w: response is not the RIM service's JSON: %v", id, ErrFormat, err)
	}
	if resp.ID != id {
		return nil, fmt.Errorf("fetch RIM %s: %w: the service answered with RIM %q", id, ErrMismatch, resp.ID)
	}
	xml, err := base64.StdEncoding.DecodeString(resp.RIM)
	if err != nil {
		return nil, fmt.Errorf("fetch RIM %s: %w: rim is not base64: %v", id, ErrFormat, err)
	}
	if resp.SHA256 != "" {
		sum := sha256.Sum256(xml)
		if !strings.EqualFold(resp.SHA256, hex.EncodeToString(sum[:])) {
			return nil, fmt.Errorf("fetch RIM %s: %w: its SHA-256 is not the one the service gives", id, ErrMismatch)
		}
	}
	if _, err := ParseRIM(xml); err != nil {
		return nil, fmt.Errorf("fetch RIM %s: %w", id, err)
	}
	return xml, nil
}

// OCSP asks the OCSP service for cert's status (issued by issuer) and returns the DER response.
func (f *Fetcher) OCSP(ctx context.Context, cert, issuer *x509.Certificate) ([]byte, error) {
	u := f.OCSPURL
	if u == "" {
		u = DefaultOCSPURL
	}
	q, err := ocsp.CreateRequest(cert, issuer, &ocsp.RequestOptions{Hash: crypto.SHA384})
	if err != nil {
		return nil, fmt.Errorf("OCSP request for %q: %w", cert.Subject.CommonName, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(q))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/ocsp-request")
	der, err := f.do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch OCSP for %q: %w", cert.Subject.CommonName, err)
	}
	if _, err := ocsp.ParseResponseForCert(der, cert, issuer); err != nil {
		return nil, fmt.Errorf("fetch OCSP for %q: %w: %v", cert.Subject.CommonName, ErrFormat, err)
	}
	return der, nil
}

// OCSPChain fetches the responses [Verify] needs for chain (leaf to root): from index from (1
// for a device chain, 0 for a RIM's) to the certificate below the root. It returns them by
// [OCSPFileName].
func (f *Fetcher) OCSPChain(ctx context.Context, chain []*x509.Certificate, from int) (map[string][]byte, error) {
	out := map[string][]byte{}
	for i := from; i < len(chain)-1; i++ {
		der, err := f.OCSP(ctx, chain[i], chain[i+1])
		if err != nil {
			return nil, err
		}
		out[OCSPFileName(chain[i])] = der
	}
	return out, nil
}

func (f *Fetcher) do(req *http.Request) ([]byte, error) {
	c := f.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxResponse {
		return nil, fmt.Errorf("response larger than %d bytes", maxResponse)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: HTTP %s", req.URL.Redacted(), resp.Status)
	}
	return body, nil
}
