package collateral

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Where Intel serves collateral.
const (
	// IntelPCS is the base URL of Intel's Provisioning Certification Service.
	IntelPCS = "https://api.trustedservices.intel.com"
	// IntelRootCACRL is the CRL distribution point of the Intel SGX Root CA (DER).
	IntelRootCACRL = "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der"
)

// Defaults of a [Fetcher].
const (
	DefaultTimeout = 30 * time.Second // for one request, body included
	DefaultMaxSize = 4 << 20          // bytes of one response body
)

// TEE names the kind of TEE whose collateral is fetched; the values are those of attest.Kind.
type TEE string

// The TEEs that Intel's PCS serves collateral for.
const (
	SGX TEE = "sgx"
	TDX TEE = "tdx"
)

// CA names the Intel CA that issued a platform's PCK certificate, and so its PCK CRL.
type CA string

// The PCK CAs, as the PCS names them.
const (
	ProcessorCA CA = "processor" // CN=Intel SGX PCK Processor CA
	PlatformCA  CA = "platform"  // CN=Intel SGX PCK Platform CA
)

// Platform names the collateral that quotes from one kind of platform need.
type Platform struct {
	TEE   TEE    // SGX or TDX
	FMSPC string // 12 hex digits, from the PCK certificate's SGX extension
	CA    CA     // the PCK certificate's issuer
}

// String names p as in "SGX FMSPC 00906ED50000 (processor CA)".
func (p Platform) String() string {
	return fmt.Sprintf("%s FMSPC %s (%s CA)", strings.ToUpper(string(p.TEE)), strings.ToUpper(p.FMSPC), p.CA)
}

// check rejects a platform that is not one the PCS knows how to name. It guards the URLs and
// cache paths built from p.
func (p Platform) check() error {
	if p.TEE != SGX && p.TEE != TDX {
		return fmt.Errorf("unknown TEE %q, want %q or %q", p.TEE, SGX, TDX)
	}
	if p.CA != ProcessorCA && p.CA != PlatformCA {
		return fmt.Errorf("unknown PCK CA %q, want %q or %q", p.CA, ProcessorCA, PlatformCA)
	}
	if _, err := hex.DecodeString(p.FMSPC); err != nil || len(p.FMSPC) != 12 {
		return fmt.Errorf("FMSPC %q is not 12 hex digits", p.FMSPC)
	}
	return nil
}

// Fetcher fetches collateral from Intel's PCS or a PCCS with the PCS API version 4. The zero
// Fetcher asks Intel's PCS. A Fetcher is safe for concurrent use.
type Fetcher struct {
	// BaseURL is the service: "" or [IntelPCS] for Intel's PCS, else a PCCS such as
	// "https://pccs.example:8081".
	BaseURL string
	// RootCACRLURL is where the Intel SGX Root CA CRL comes from. "" means [IntelRootCACRL] when
	// BaseURL is Intel's PCS, else the PCCS's BaseURL + "/sgx/certification/v4/rootcacrl".
	RootCACRLURL string
	// Client makes the requests; nil means http.DefaultClient. A PCCS with a self-signed
	// certificate needs a client that trusts it.
	Client *http.Client
	// Timeout bounds each request, body included; 0 means DefaultTimeout.
	Timeout time.Duration
	// MaxSize bounds each response body in bytes; 0 means DefaultMaxSize.
	MaxSize int64
	// Update asks for the TCB info and QE identity of one generation of Intel's TCB evaluation:
	// "early" (the newest, as soon as Intel publishes it) or "standard" (what Intel's services
	// serve by default, "" leaves the choice to them).
	Update string
}

// StatusError is an answer other than 200 OK.
type StatusError struct {
	URL        string
	StatusCode int
	// Intel is what Intel's Error-Code, Error-Message and Request-ID headers said, if anything.
	Intel string
}

// Error names the URL, the status and what Intel said.
func (e *StatusError) Error() string {
	s := fmt.Sprintf("GET %s: %d %s", e.URL, e.StatusCode, http.StatusText(e.StatusCode))
	if e.Intel != "" {
		s += " (" + e.Intel + ")"
	}
	return s
}

// Fetch fetches the collateral of platform p: the TCB info for its FMSPC, the QE identity (TD QE
// for TDX), the PCK CRL of its CA and the root CA CRL, each with its issuer chain. It checks that
// each piece has the expected form and is for p, not that it is signed by Intel: that is the
// verifier's work.
func (f *Fetcher) Fetch(ctx context.Context, p Platform) (*Bundle, error) {
	if err := p.check(); err != nil {
		return nil, err
	}
	base := strings.TrimSuffix(f.baseURL(), "/")
	tcbURL := fmt.Sprintf("%s/%s/certification/v4/tcb?fmspc=%s", base, p.TEE, strings.ToUpper(p.FMSPC))
	qeURL := fmt.Sprintf("%s/%s/certification/v4/qe/identity", base, p.TEE)
	switch f.Update {
	case "":
	case "early", "standard":
		tcbURL += "&update=" + f.Update
		qeURL += "?update=" + f.Update
	default:
		return nil, fmt.Errorf("update %q is not early or standard", f.Update)
	}
	// TDX platforms have SGX PCK certificates: their CRL is served under /sgx only.
	pckURL := fmt.Sprintf("%s/sgx/certification/v4/pckcrl?ca=%s&encoding=der", base, p.CA)
	rootURL := f.rootCACRLURL()

	b := new(Bundle)
	var err error
	if b.TCBInfo, b.TCBInfoIssuerChain, err = f.get(ctx, tcbURL, "TCB-Info-Issuer-Chain", "SGX-TCB-Info-Issuer-Chain"); err != nil {
		return nil, err
	}
	if err := checkTCBInfo(b.TCBInfo, p); err != nil {
		return nil, fmt.Errorf("%s: %w", tcbURL, err)
	}
	if b.QEIdentity, b.QEIdentityIssuerChain, err = f.get(ctx, qeURL, "SGX-Enclave-Identity-Issuer-Chain"); err != nil {
		return nil, err
	}
	if err := checkQEIdentity(b.QEIdentity, p); err != nil {
		return nil, fmt.Errorf("%s: %w", qeURL, err)
	}
	var body []byte
	if body, b.PCKCRLIssuerChain, err = f.get(ctx, pckURL, "SGX-PCK-CRL-Issuer-Chain"); err != nil {
		return nil, err
	}
	if b.PCKCRL, _, err = decodeCRL(body); err != nil {
		return nil, fmt.Errorf("%s: %w", pckURL, err)
	}
	if body, _, err = f.get(ctx, rootURL); err != nil {
		return nil, err
	}
	if b.RootCACRL, _, err = decodeCRL(body); err != nil {
		return nil, fmt.Errorf("%s: %w", rootURL, err)
	}
	return b, nil
}

func (f *Fetcher) baseURL() string {
	if f.BaseURL == "" {
		return IntelPCS
	}
	return f.BaseURL
}

func (f *Fetcher) rootCACRLURL() string {
	switch base := strings.TrimSuffix(f.baseURL(), "/"); {
	case f.RootCACRLURL != "":
		return f.RootCACRLURL
	case base == IntelPCS:
		return IntelRootCACRL
	default:
		return base + "/sgx/certification/v4/rootcacrl"
	}
}

// get fetches rawURL and returns its body and, when chainHeaders are named, the issuer chain
// from the first of those headers present (URL-encoded PEM).
func (f *Fetcher) get(ctx context.Context, rawURL string, chainHeaders ...string) (body, chain []byte, err error) {
	body, header, err := f.do(ctx, rawURL)
	if err != nil {
		return nil, nil, err
	}
	if len(chainHeaders) == 0 {
		return body, nil, nil
	}
	for _, name := range chainHeaders {
		if v := header.Get(name); v != "" {
			if chain, err = decodeChain(v); err != nil {
				return nil, nil, fmt.Errorf("%s: header %s: %w", rawURL, name, err)
			}
			return body, chain, nil
		}
	}
	return nil, nil, fmt.Errorf("%s: no issuer chain (header %s)", rawURL, strings.Join(chainHeaders, " or "))
}

// do makes one GET request within the Fetcher's timeout and size limit.
func (f *Fetcher) do(ctx context.Context, rawURL string) ([]byte, http.Header, error) {
	timeout, maxSize, client := f.Timeout, f.MaxSize, f.Client
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	if client == nil {
		client = http.DefaultClient
	}
	reqCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	fail := func(err error) error {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			err = fmt.Errorf("no answer within %v: %w", timeout, err)
		}
		return fmt.Errorf("GET %s: %w", rawURL, err)
	}
	req, err := http.NewRequestWithContext(reqCtx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, nil, fail(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, fail(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, nil, &StatusError{URL: rawURL, StatusCode: resp.StatusCode, Intel: intelError(resp.Header)}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxSize+1))
	if err != nil {
		return nil, nil, fail(err)
	}
	if int64(len(body)) > maxSize {
		return nil, nil, fail(fmt.Errorf("response larger than %d bytes", maxSize))
	}
	return body, resp.Header, nil
}

// intelError summarizes the headers in which Intel's services explain an error.
func intelError(h http.Header) string {
	var parts []string
	for _, name := range []string{"Error-Code", "Error-Message", "Request-ID"} {
		if v := h.Get(name); v != "" {
			parts = append(parts, name+": "+v)
		}
	}
	return strings.Join(parts, ", ")
}

// decodeChain decodes an issuer-chain header, URL-encoded PEM certificates, and checks that it
// holds certificates and nothing else.
func decodeChain(v string) ([]byte, error) {
	// Path unescaping leaves a literal "+" alone: base64 uses it, and Intel encodes a space as %20.
	s, err := url.PathUnescape(v)
	if err != nil {
		return nil, fmt.Errorf("bad URL encoding: %v", err)
	}
	rest := []byte(s)
	for n := 0; ; n++ {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			if n == 0 || len(bytes.TrimSpace(rest)) > 0 {
				return nil, errors.New("not a chain of PEM certificates")
			}
			return []byte(s), nil
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %d is %q, want CERTIFICATE", n, block.Type)
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return nil, fmt.Errorf("certificate %d: %v", n, err)
		}
	}
}

// decodeCRL returns the DER of a CRL that came as DER or, from a PCCS, as hex, and the parsed
// CRL, which must have a nextUpdate.
func decodeCRL(body []byte) ([]byte, *x509.RevocationList, error) {
	der := body
	if d, err := hex.DecodeString(string(bytes.TrimSpace(body))); err == nil {
		der = d
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, nil, fmt.Errorf("not a CRL in DER or hex: %v", err)
	}
	if crl.NextUpdate.IsZero() {
		return nil, nil, errors.New("CRL without nextUpdate")
	}
	return der, crl, nil
}

// meta is what the cache and [Inspect] read of a TCB info or QE identity: the inner object's id,
// version, FMSPC, dates and TCB evaluation data number.
type meta struct {
	ID                      string    `json:"id"`
	Version                 int       `json:"version"`
	FMSPC                   string    `json:"fmspc"`
	IssueDate               time.Time `json:"issueDate"`
	NextUpdate              time.Time `json:"nextUpdate"`
	TCBEvaluationDataNumber int       `json:"tcbEvaluationDataNumber"`
}

// readMeta reads the meta of a PCS body {"<key>":{...},"signature":"..."}.
func readMeta(body []byte, key string) (meta, error) {
	var m meta
	var parts map[string]json.RawMessage
	if err := json.Unmarshal(body, &parts); err != nil {
		return m, fmt.Errorf("not a PCS JSON body: %v", err)
	}
	if raw := parts[key]; len(raw) == 0 || raw[0] != '{' {
		return m, fmt.Errorf("no %q object", key)
	}
	if err := json.Unmarshal(parts[key], &m); err != nil {
		return m, fmt.Errorf("%s: %v", key, err)
	}
	if m.NextUpdate.IsZero() {
		return m, fmt.Errorf("%s has no nextUpdate", key)
	}
	return m, nil
}

// checkTCBInfo checks that a TCB info body is for p: its FMSPC and, from version 3, its id.
func checkTCBInfo(body []byte, p Platform) error {
	m, err := readMeta(body, "tcbInfo")
	if err != nil {
		return err
	}
	if !strings.EqualFold(m.FMSPC, p.FMSPC) {
		return fmt.Errorf("TCB info for FMSPC %q, want %s", m.FMSPC, strings.ToUpper(p.FMSPC))
	}
	// Version 2 TCB infos, SGX only, have no id.
	if want := strings.ToUpper(string(p.TEE)); m.ID != want && !(m.ID == "" && p.TEE == SGX) {
		return fmt.Errorf("TCB info id %q, want %q", m.ID, want)
	}
	return nil
}

// checkQEIdentity checks that a QE identity body is for p's TEE: id "QE" for SGX, "TD_QE" for TDX.
func checkQEIdentity(body []byte, p Platform) error {
	m, err := readMeta(body, "enclaveIdentity")
	if err != nil {
		return err
	}
	if want := map[TEE]string{SGX: "QE", TDX: "TD_QE"}[p.TEE]; m.ID != want {
		return fmt.Errorf("enclave identity id %q, want %q", m.ID, want)
	}
	return nil
}
