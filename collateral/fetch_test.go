package collateral

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fixture is a platform and the recorded real collateral that a fake PCS serves for it.
type fixture struct {
	p    Platform
	want *Bundle
}

// join concatenates PEM files into one chain, as the PCS issuer-chain headers carry them. Some
// of the files lack a final newline.
func join(t testing.TB, names ...string) []byte {
	var chain []byte
	for _, name := range names {
		chain = append(chain, read(t, name)...)
		if chain[len(chain)-1] != '\n' {
			chain = append(chain, '\n')
		}
	}
	return chain
}

// sgxFixture is the SGX platform of the mobilecoin set (SGX-2 in the testdata README).
func sgxFixture(t testing.TB) fixture {
	const d = "mobilecoin-attestation/"
	return fixture{Platform{SGX, "00906ED50000", ProcessorCA}, &Bundle{
		TCBInfo:               read(t, d+"fmspc_00906ED50000_2023_07_12.json"),
		TCBInfoIssuerChain:    join(t, d+"tcb_signer.pem", d+"root_ca.pem"),
		QEIdentity:            read(t, d+"qe_identity.json"),
		QEIdentityIssuerChain: join(t, d+"tcb_signer.pem", d+"root_ca.pem"),
		PCKCRL:                read(t, d+"processor_crl.der"),
		PCKCRLIssuerChain:     join(t, d+"processor_ca.pem", d+"root_ca.pem"),
		RootCACRL:             read(t, d+"root_crl.der"),
	}}
}

// tdxFixture is the TDX platform of go-tdx-guest (TDX-4 in the testdata README), with the PCK
// CRL issuer chain (Platform CA, root) of the phala-dcap-qvl bundle.
func tdxFixture(t testing.TB) fixture {
	const d = "../tdx/go-tdx-guest/"
	var phala struct {
		Chain string `json:"pck_crl_issuer_chain"`
	}
	if err := json.Unmarshal(read(t, "../tdx/phala-dcap-qvl/tdx_quote_collateral.json"), &phala); err != nil {
		t.Fatal(err)
	}
	chain := read(t, "oasis-core/tcb_info_v3_fmspc_00606A000000_certs.pem")
	return fixture{Platform{TDX, "50806f000000", PlatformCA}, &Bundle{
		TCBInfo:               read(t, d+"sample_tcbInfo_response"),
		TCBInfoIssuerChain:    chain,
		QEIdentity:            read(t, d+"sample_qeIdentity_response"),
		QEIdentityIssuerChain: chain,
		PCKCRL:                read(t, d+"pckcrl"),
		PCKCRLIssuerChain:     []byte(phala.Chain),
		RootCACRL:             read(t, d+"rootcrl.der"),
	}}
}

// encodeURIComponent encodes as JavaScript's encodeURIComponent does, which is how Intel's
// services encode the issuer-chain headers ("-----BEGIN%20CERTIFICATE-----%0A...").
func encodeURIComponent(b []byte) string {
	var sb strings.Builder
	for _, c := range b {
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-_.!~*'()", c) >= 0 {
			sb.WriteByte(c)
		} else {
			fmt.Fprintf(&sb, "%%%02X", c)
		}
	}
	return sb.String()
}

// fakePCS is a PCS and PCCS over loopback serving one fixture's responses as Intel does. It
// records the request URIs; a handler in override answers for its path instead.
type fakePCS struct {
	*httptest.Server
	fx fixture

	mu       sync.Mutex
	requests []string
	override map[string]http.HandlerFunc
}

func newFakePCS(t *testing.T, fx fixture) *fakePCS {
	s := &fakePCS{fx: fx, override: make(map[string]http.HandlerFunc)}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *fakePCS) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests = append(s.requests, r.Method+" "+r.URL.RequestURI())
	h := s.override[r.URL.Path]
	s.mu.Unlock()
	if h != nil {
		h(w, r)
		return
	}
	b, tee := s.fx.want, string(s.fx.p.TEE)
	switch r.URL.Path {
	case "/" + tee + "/certification/v4/tcb":
		w.Header().Set("TCB-Info-Issuer-Chain", encodeURIComponent(b.TCBInfoIssuerChain))
		w.Write(b.TCBInfo)
	case "/" + tee + "/certification/v4/qe/identity":
		w.Header().Set("SGX-Enclave-Identity-Issuer-Chain", encodeURIComponent(b.QEIdentityIssuerChain))
		w.Write(b.QEIdentity)
	case "/sgx/certification/v4/pckcrl":
		w.Header().Set("SGX-PCK-CRL-Issuer-Chain", encodeURIComponent(b.PCKCRLIssuerChain))
		w.Write(b.PCKCRL)
	case "/sgx/certification/v4/rootcacrl": // a PCCS answers in hex
		w.Write([]byte(hex.EncodeToString(b.RootCACRL)))
	case "/IntelSGXRootCA.der":
		w.Write(b.RootCACRL)
	default:
		http.NotFound(w, r)
	}
}

// handle makes h answer for path.
func (s *fakePCS) handle(path string, h http.HandlerFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.override[path] = h
}

// count returns how many requests the server has had.
func (s *fakePCS) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.requests)
}

// wantRequests lists the requests that fetching fx's bundle from a PCCS makes.
func wantRequests(fx fixture) []string {
	return []string{
		fmt.Sprintf("GET /%s/certification/v4/tcb?fmspc=%s", fx.p.TEE, strings.ToUpper(fx.p.FMSPC)),
		fmt.Sprintf("GET /%s/certification/v4/qe/identity", fx.p.TEE),
		fmt.Sprintf("GET /sgx/certification/v4/pckcrl?ca=%s&encoding=der", fx.p.CA),
		"GET /sgx/certification/v4/rootcacrl",
	}
}

func TestFetch(t *testing.T) {
	for _, fx := range []fixture{sgxFixture(t), tdxFixture(t)} {
		t.Run(string(fx.p.TEE), func(t *testing.T) {
			s := newFakePCS(t, fx)
			got, err := (&Fetcher{BaseURL: s.URL + "/"}).Fetch(context.Background(), fx.p)
			if err != nil {
				t.Fatal(err)
			}
			if !equal(got, fx.want) {
				t.Error("fetched bundle differs from the responses")
			}
			if want := wantRequests(fx); !slices.Equal(s.requests, want) {
				t.Errorf("requests\n%q\nwant\n%q", s.requests, want)
			}
		})
	}
}

func TestFetchRootCACRLURL(t *testing.T) {
	fx := sgxFixture(t)
	s := newFakePCS(t, fx)
	got, err := (&Fetcher{BaseURL: s.URL, RootCACRLURL: s.URL + "/IntelSGXRootCA.der"}).Fetch(context.Background(), fx.p)
	if err != nil {
		t.Fatal(err)
	}
	if !equal(got, fx.want) {
		t.Error("fetched bundle differs from the responses")
	}
	if last := s.requests[len(s.requests)-1]; last != "GET /IntelSGXRootCA.der" {
		t.Errorf("root CA CRL from %s", last)
	}
	for _, c := range []struct {
		f    Fetcher
		want string
	}{
		{Fetcher{}, IntelRootCACRL},
		{Fetcher{BaseURL: IntelPCS + "/"}, IntelRootCACRL},
		{Fetcher{BaseURL: "https://pccs.example:8081/"}, "https://pccs.example:8081/sgx/certification/v4/rootcacrl"},
		{Fetcher{BaseURL: "https://pccs.example:8081", RootCACRLURL: "https://crl.example/root.der"}, "https://crl.example/root.der"},
	} {
		if got := c.f.rootCACRLURL(); got != c.want {
			t.Errorf("%+v: root CA CRL URL %s, want %s", c.f, got, c.want)
		}
	}
}

// TestFetchHeaders checks the other spellings of an issuer-chain header that services send.
func TestFetchHeaders(t *testing.T) {
	fx := sgxFixture(t)
	for name, h := range map[string]func(http.Header){
		"v3 header name": func(h http.Header) {
			h.Set("SGX-TCB-Info-Issuer-Chain", encodeURIComponent(fx.want.TCBInfoIssuerChain))
		},
		"literal plus": func(h http.Header) {
			h.Set("TCB-Info-Issuer-Chain", url.PathEscape(string(fx.want.TCBInfoIssuerChain)))
		},
	} {
		t.Run(name, func(t *testing.T) {
			if !strings.Contains(url.PathEscape(string(fx.want.TCBInfoIssuerChain)), "+") {
				t.Fatal("the chain has no '+' to test with")
			}
			s := newFakePCS(t, fx)
			s.handle("/sgx/certification/v4/tcb", func(w http.ResponseWriter, r *http.Request) {
				h(w.Header())
				w.Write(fx.want.TCBInfo)
			})
			got, err := (&Fetcher{BaseURL: s.URL}).Fetch(context.Background(), fx.p)
			if err != nil {
				t.Fatal(err)
			}
			if !equal(got, fx.want) {
				t.Error("fetched bundle differs from the responses")
			}
		})
	}
}

func TestFetchErrors(t *testing.T) {
	fx := sgxFixture(t)
	const (
		tcbPath  = "/sgx/certification/v4/tcb"
		qePath   = "/sgx/certification/v4/qe/identity"
		pckPath  = "/sgx/certification/v4/pckcrl"
		rootPath = "/sgx/certification/v4/rootcacrl"
	)
	withChain := func(header string, chain, body []byte) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set(header, encodeURIComponent(chain))
			w.Write(body)
		}
	}
	for _, c := range []struct {
		name    string
		path    string
		h       http.HandlerFunc
		f       Fetcher
		status  int      // of the StatusError wanted, if any
		want    []string // in the error message
		timeout bool
	}{
		{name: "404", path: tcbPath, h: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Error-Code", "NotFound")
			w.Header().Set("Request-ID", "abc123")
			w.WriteHeader(http.StatusNotFound)
		}, status: 404, want: []string{tcbPath + "?fmspc=00906ED50000", "404 Not Found", "Error-Code: NotFound", "Request-ID: abc123"}},
		{name: "500", path: qePath, h: func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "oops", http.StatusInternalServerError)
		}, status: 500, want: []string{qePath, "500 Internal Server Error"}},
		{name: "oversized", path: tcbPath, f: Fetcher{MaxSize: 1000}, want: []string{tcbPath, "larger than 1000 bytes"}},
		{name: "oversized by default", path: rootPath, h: func(w http.ResponseWriter, r *http.Request) {
			w.Write(make([]byte, DefaultMaxSize+1))
		}, want: []string{rootPath, fmt.Sprintf("larger than %d bytes", DefaultMaxSize)}},
		{name: "no issuer chain", path: qePath, h: func(w http.ResponseWriter, r *http.Request) {
			w.Write(fx.want.QEIdentity)
		}, want: []string{qePath, "no issuer chain", "SGX-Enclave-Identity-Issuer-Chain"}},
		{name: "no TCB issuer chain", path: tcbPath, h: func(w http.ResponseWriter, r *http.Request) {
			w.Write(fx.want.TCBInfo)
		}, want: []string{tcbPath, "TCB-Info-Issuer-Chain or SGX-TCB-Info-Issuer-Chain"}},
		{name: "bad URL encoding", path: pckPath, h: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("SGX-PCK-CRL-Issuer-Chain", encodeURIComponent(fx.want.PCKCRLIssuerChain)+"%zz")
			w.Write(fx.want.PCKCRL)
		}, want: []string{pckPath, "SGX-PCK-CRL-Issuer-Chain", "bad URL encoding"}},
		{name: "chain not PEM", path: tcbPath, h: withChain("TCB-Info-Issuer-Chain", []byte("hello"), fx.want.TCBInfo),
			want: []string{tcbPath, "not a chain of PEM certificates"}},
		{name: "chain with a CRL", path: pckPath, h: withChain("SGX-PCK-CRL-Issuer-Chain", read(t, "mobilecoin-attestation/processor_crl.pem"), fx.want.PCKCRL),
			want: []string{pckPath, `"X509 CRL", want CERTIFICATE`}},
		{name: "TCB info of another FMSPC", path: tcbPath,
			h:    withChain("TCB-Info-Issuer-Chain", fx.want.TCBInfoIssuerChain, read(t, "oasis-core/tcb_info_v3_fmspc_00606A000000.json")),
			want: []string{tcbPath, `FMSPC "00606A000000", want 00906ED50000`}},
		{name: "TDX TCB info", path: tcbPath,
			h: withChain("TCB-Info-Issuer-Chain", fx.want.TCBInfoIssuerChain,
				[]byte(`{"tcbInfo":{"id":"TDX","version":3,"fmspc":"00906ed50000","nextUpdate":"2023-08-11T19:56:44Z"},"signature":"00"}`)),
			want: []string{tcbPath, `TCB info id "TDX", want "SGX"`}},
		{name: "TCB info not JSON", path: tcbPath, h: withChain("TCB-Info-Issuer-Chain", fx.want.TCBInfoIssuerChain, []byte("<html>")),
			want: []string{tcbPath, "not a PCS JSON body"}},
		{name: "TDX QE identity", path: qePath,
			h:    withChain("SGX-Enclave-Identity-Issuer-Chain", fx.want.QEIdentityIssuerChain, read(t, "../tdx/go-tdx-guest/sample_qeIdentity_response")),
			want: []string{qePath, `id "TD_QE", want "QE"`}},
		{name: "PCK CRL not a CRL", path: pckPath, h: withChain("SGX-PCK-CRL-Issuer-Chain", fx.want.PCKCRLIssuerChain, []byte("not a CRL")),
			want: []string{pckPath, "not a CRL in DER or hex"}},
		{name: "root CA CRL in PEM", path: rootPath, h: func(w http.ResponseWriter, r *http.Request) {
			w.Write(read(t, "mobilecoin-attestation/root_crl.pem"))
		}, want: []string{rootPath, "not a CRL in DER or hex"}},
		{name: "timeout", path: qePath, h: func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done()
		}, f: Fetcher{Timeout: 50 * time.Millisecond}, want: []string{qePath, "no answer within 50ms"}, timeout: true},
		{name: "timeout in the body", path: pckPath, h: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("SGX-PCK-CRL-Issuer-Chain", encodeURIComponent(fx.want.PCKCRLIssuerChain))
			w.Write(fx.want.PCKCRL[:10])
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}, f: Fetcher{Timeout: 50 * time.Millisecond}, want: []string{pckPath, "no answer within 50ms"}, timeout: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newFakePCS(t, fx)
			if c.h != nil {
				s.handle(c.path, c.h)
			}
			f := c.f
			f.BaseURL = s.URL
			start := time.Now()
			_, err := f.Fetch(context.Background(), fx.p)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			var se *StatusError
			if errors.As(err, &se) != (c.status != 0) || c.status != 0 && se.StatusCode != c.status {
				t.Errorf("error %#v, want a StatusError with status %d", err, c.status)
			}
			if c.timeout && (!errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 10*time.Second) {
				t.Errorf("timeout: %v after %v", err, time.Since(start))
			}
		})
	}
}

func TestFetchCanceled(t *testing.T) {
	fx := sgxFixture(t)
	s := newFakePCS(t, fx)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := (&Fetcher{BaseURL: s.URL}).Fetch(ctx, fx.p)
	if !errors.Is(err, context.Canceled) || strings.Contains(err.Error(), "no answer within") {
		t.Errorf("canceled fetch: %v", err)
	}
}

func TestFetchUnreachable(t *testing.T) {
	fx := sgxFixture(t)
	s := newFakePCS(t, fx)
	s.Close()
	_, err := (&Fetcher{BaseURL: s.URL}).Fetch(context.Background(), fx.p)
	if err == nil || !strings.Contains(err.Error(), s.URL+"/sgx/certification/v4/tcb") {
		t.Errorf("unreachable server: %v, want an error naming the URL", err)
	}
}

func TestFetchBadPlatform(t *testing.T) {
	fx := sgxFixture(t)
	s := newFakePCS(t, fx)
	for _, c := range []struct {
		p    Platform
		want string
	}{
		{Platform{"sev", "00906ED50000", ProcessorCA}, `unknown TEE "sev"`},
		{Platform{SGX, "00906ED50000", "intermediate"}, `unknown PCK CA "intermediate"`},
		{Platform{SGX, "../../../etc", ProcessorCA}, `FMSPC "../../../etc" is not 12 hex digits`},
		{Platform{SGX, "00906ED5", ProcessorCA}, "not 12 hex digits"},
		{Platform{SGX, "00906ED50000&x=1", ProcessorCA}, "not 12 hex digits"},
	} {
		_, err := (&Fetcher{BaseURL: s.URL}).Fetch(context.Background(), c.p)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.p, err, c.want)
		}
	}
	if n := s.count(); n != 0 {
		t.Errorf("%d requests for bad platforms", n)
	}
}

func TestPlatformString(t *testing.T) {
	if got := (Platform{TDX, "50806f000000", PlatformCA}).String(); got != "TDX FMSPC 50806F000000 (platform CA)" {
		t.Errorf("String() = %s", got)
	}
}
