// Package collateral holds the Intel PCS collateral that DCAP quote verification needs: the TCB
// info and QE identity with their issuer chains, and the certificate revocation lists.
//
// A [Bundle] keeps the raw bytes exactly as Intel's Provisioning Certification Service (or a PCCS)
// serves them, because the TCB info and QE identity signatures cover the exact JSON bytes. On disk
// a bundle is a folder of one file per piece (see [ReadDir]), so that an owner can fetch collateral
// on a connected machine and verify quotes offline.
//
// A [Fetcher] fetches a platform's bundle from Intel's PCS or a PCCS; a [Cache] keeps bundles on
// disk and fetches again only when a piece is past its nextUpdate. docs/collateral.md describes
// the folders.
package collateral

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Bundle is one platform's collateral as raw PCS responses.
type Bundle struct {
	// TCBInfo is the PCS TCB info body, {"tcbInfo":{...},"signature":"..."}.
	TCBInfo []byte
	// TCBInfoIssuerChain is the PEM chain of the TCB info signer (TCB Signing cert, root).
	TCBInfoIssuerChain []byte
	// QEIdentity is the PCS QE identity body, {"enclaveIdentity":{...},"signature":"..."}.
	QEIdentity []byte
	// QEIdentityIssuerChain is the PEM chain of the QE identity signer.
	QEIdentityIssuerChain []byte
	// PCKCRL is the DER CRL of the PCK (Platform or Processor) CA; optional.
	PCKCRL []byte
	// PCKCRLIssuerChain is the PEM chain of the PCK CRL issuer (PCK CA, root); needed with PCKCRL.
	PCKCRLIssuerChain []byte
	// RootCACRL is the DER CRL of the Intel SGX Root CA; optional.
	RootCACRL []byte
}

// File names in a collateral folder.
const (
	TCBInfoFile               = "tcb-info.json"
	TCBInfoIssuerChainFile    = "tcb-info-issuer-chain.pem"
	QEIdentityFile            = "qe-identity.json"
	QEIdentityIssuerChainFile = "qe-identity-issuer-chain.pem"
	PCKCRLFile                = "pck-crl.der"
	PCKCRLIssuerChainFile     = "pck-crl-issuer-chain.pem"
	RootCACRLFile             = "root-ca-crl.der"
)

// TCBInfoFileFor is the name of the TCB info file for one FMSPC ("tcb-info-<fmspc>.json", lower
// hex), which lets one folder serve several platforms.
func TCBInfoFileFor(fmspc string) string {
	return "tcb-info-" + strings.ToLower(fmspc) + ".json"
}

// field is one piece of a bundle and its file name.
type field struct {
	name     string
	data     *[]byte
	optional bool
}

// fields lists the pieces of b with their file names.
func (b *Bundle) fields() []field {
	return []field{
		{TCBInfoFile, &b.TCBInfo, false},
		{TCBInfoIssuerChainFile, &b.TCBInfoIssuerChain, false},
		{QEIdentityFile, &b.QEIdentity, false},
		{QEIdentityIssuerChainFile, &b.QEIdentityIssuerChain, false},
		{PCKCRLFile, &b.PCKCRL, true},
		{PCKCRLIssuerChainFile, &b.PCKCRLIssuerChain, true},
		{RootCACRLFile, &b.RootCACRL, true},
	}
}

// ReadDir reads a collateral folder. The TCB info comes from tcb-info-<fmspc>.json when fmspc is
// given and that file exists, else from tcb-info.json. The TCB info, QE identity and their issuer
// chains are required; the CRLs are optional, but a PCK CRL needs its issuer chain.
func ReadDir(dir, fmspc string) (*Bundle, error) {
	return readFS(os.DirFS(cmp.Or(dir, ".")), dir, fmspc)
}

// readFS reads a collateral folder, named dir in errors, through fsys as [ReadDir] describes.
func readFS(fsys fs.FS, dir, fmspc string) (*Bundle, error) {
	b := new(Bundle)
	for _, f := range b.fields() {
		name := f.name
		if name == TCBInfoFile && fmspc != "" {
			if _, err := fs.Stat(fsys, TCBInfoFileFor(fmspc)); err == nil {
				name = TCBInfoFileFor(fmspc)
			}
		}
		data, err := fs.ReadFile(fsys, name)
		switch {
		case errors.Is(err, fs.ErrNotExist) && f.optional:
			continue
		case errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("collateral %s: missing %s", dir, name)
		case err != nil:
			return nil, fmt.Errorf("collateral %s: %w", dir, err)
		case len(data) == 0:
			return nil, fmt.Errorf("collateral %s: %s is empty", dir, name)
		}
		*f.data = data
	}
	if len(b.PCKCRL) > 0 && len(b.PCKCRLIssuerChain) == 0 {
		return nil, fmt.Errorf("collateral %s: %s without %s", dir, PCKCRLFile, PCKCRLIssuerChainFile)
	}
	return b, nil
}

// WriteDir writes b into dir (created if needed) with the file names that [ReadDir] reads; the TCB
// info goes to tcb-info.json. Empty optional pieces are not written. Each file is replaced
// atomically: a reader finds the old file or the new one, never a torn one.
func (b *Bundle) WriteDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("write collateral: %w", err)
	}
	for _, f := range b.fields() {
		if len(*f.data) == 0 {
			if f.optional {
				continue
			}
			return fmt.Errorf("write collateral to %s: %s is empty", dir, f.name)
		}
		if err := writeFile(filepath.Join(dir, f.name), *f.data); err != nil {
			return fmt.Errorf("write collateral: %w", err)
		}
	}
	return nil
}

// writeFile writes data to a temporary file beside name, syncs it and renames it to name.
func writeFile(name string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err != nil {
		return err
	}
	return os.Rename(f.Name(), name)
}
