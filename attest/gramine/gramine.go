// Package gramine is the attester for Go programs running inside a Gramine SGX enclave: it gets
// DCAP quotes from Gramine's /dev/attestation pseudo-filesystem.
package gramine

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/ppml/ppml/attest"
)

// DefaultDir is where Gramine mounts its attestation pseudo-filesystem.
const DefaultDir = "/dev/attestation"

// maxQuote bounds what is read as a quote (Gramine's own limit).
const maxQuote = 8192

// Attester gets quotes through a /dev/attestation folder.
type Attester struct {
	Dir string // "" means DefaultDir
}

// Kind returns attest.SGX.
func (a Attester) Kind() attest.Kind { return attest.SGX }

func (a Attester) path(name string) string {
	dir := a.Dir
	if dir == "" {
		dir = DefaultDir
	}
	return filepath.Join(dir, name)
}

// Attest writes reportData to user_report_data, in one write as Gramine requires, and reads the
// quote Gramine makes over it.
func (a Attester) Attest(reportData attest.ReportData) ([]byte, error) {
	typ, err := os.ReadFile(a.path("attestation_type"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s not found: not running inside Gramine SGX", a.path("attestation_type"))
	}
	if err != nil {
		return nil, fmt.Errorf("read Gramine's attestation type: %w", err)
	}
	if t := string(bytes.TrimSpace(typ)); t != "dcap" {
		return nil, fmt.Errorf("Gramine's attestation type is %q, not \"dcap\" (set sgx.remote_attestation = \"dcap\" in the manifest)", t)
	}
	f, err := os.OpenFile(a.path("user_report_data"), os.O_WRONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("write report data: %w", err)
	}
	_, err = f.Write(reportData[:])
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("write report data: %w", err)
	}
	q, err := os.Open(a.path("quote"))
	if err != nil {
		return nil, fmt.Errorf("read quote: %w", err)
	}
	defer q.Close()
	quote, err := io.ReadAll(io.LimitReader(q, maxQuote+1))
	if err != nil {
		return nil, fmt.Errorf("read quote: %w", err)
	}
	if len(quote) == 0 || len(quote) > maxQuote {
		return nil, fmt.Errorf("Gramine's quote is %d bytes (want 1 to %d)", len(quote), maxQuote)
	}
	return quote, nil
}
