package testfiles

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// PCCS answers the PCS API version 4 requests of a PCCS (/sgx/... and /tdx/...) with the files
// of the collateral folder dir (docs/collateral.md), the issuer chains URL-encoded in their
// headers; the TCB info of an FMSPC is tcb-info-<fmspc>.json where the folder has it. If log is
// not "", each request's URI is appended to the file log.
func PCCS(dir, log string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if log != "" {
			if f, err := os.OpenFile(log, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
				fmt.Fprintln(f, r.URL.RequestURI())
				f.Close()
			}
		}
		file, chainFile, header := "", "", ""
		switch path := r.URL.Path; {
		case strings.HasSuffix(path, "/certification/v4/tcb"):
			file, chainFile, header = "tcb-info.json", "tcb-info-issuer-chain.pem", "TCB-Info-Issuer-Chain"
			name := "tcb-info-" + strings.ToLower(r.URL.Query().Get("fmspc")) + ".json"
			if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
				file = name
			}
		case strings.HasSuffix(path, "/certification/v4/qe/identity"):
			file, chainFile, header = "qe-identity.json", "qe-identity-issuer-chain.pem", "SGX-Enclave-Identity-Issuer-Chain"
		case path == "/sgx/certification/v4/pckcrl":
			file, chainFile, header = "pck-crl.der", "pck-crl-issuer-chain.pem", "SGX-PCK-CRL-Issuer-Chain"
		case path == "/sgx/certification/v4/rootcacrl":
			file = "root-ca-crl.der"
		}
		body, err := os.ReadFile(filepath.Join(dir, file))
		if file == "" || err != nil {
			http.NotFound(w, r)
			return
		}
		if chainFile != "" {
			chain, err := os.ReadFile(filepath.Join(dir, chainFile))
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			w.Header().Set(header, url.PathEscape(string(chain)))
		}
		w.Write(body)
	})
}
