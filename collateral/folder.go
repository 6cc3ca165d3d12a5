package collateral

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// FetchDir fetches the collateral of platforms, which must share their TEE and PCK CA, and
// writes it into dir (which must exist) in the layout that [ReadDir] reads: the QE identity and
// CRLs once, the first platform's TCB info as tcb-info.json and, when there are several, each
// one's as tcb-info-<fmspc>.json. It writes nothing unless every fetch succeeds.
func (f *Fetcher) FetchDir(ctx context.Context, dir string, platforms ...Platform) error {
	if len(platforms) == 0 {
		return errors.New("no platform to fetch collateral for")
	}
	var bundles []*Bundle
	var fmspcs []string
	for _, p := range platforms {
		if p.TEE != platforms[0].TEE || p.CA != platforms[0].CA {
			return fmt.Errorf("%v and %v need folders of their own: their TEE or PCK CA differ", platforms[0], p)
		}
		if fmspc := strings.ToLower(p.FMSPC); !slices.Contains(fmspcs, fmspc) {
			b, err := f.Fetch(ctx, p)
			if err != nil {
				return err
			}
			bundles, fmspcs = append(bundles, b), append(fmspcs, fmspc)
		}
	}
	if err := bundles[0].WriteDir(dir); err != nil {
		return err
	}
	for i, b := range bundles {
		if len(bundles) > 1 {
			if err := writeFile(filepath.Join(dir, TCBInfoFileFor(fmspcs[i])), b.TCBInfo); err != nil {
				return fmt.Errorf("write collateral: %w", err)
			}
		}
	}
	return nil
}

// Piece is one dated piece of a collateral folder, as [Inspect] reads it.
type Piece struct {
	File string `json:"file"`
	// What is "TCB info", "QE identity", "CRL" or "certificates".
	What string `json:"what"`
	// ID is the TCB info's id (SGX, TDX) or the QE identity's (QE, TD_QE); for a CRL or a chain,
	// the issuer's or the first certificate's common name.
	ID                      string    `json:"id"`
	Version                 int       `json:"version,omitempty"`
	FMSPC                   string    `json:"fmspc,omitempty"`
	TCBEvaluationDataNumber int       `json:"tcb_evaluation_data_number,omitempty"`
	Revoked                 int       `json:"revoked,omitempty"` // certificates a CRL revokes
	IssueDate               time.Time `json:"issue_date"`
	// NextUpdate is when the piece is superseded (nextUpdate), or for certificates the earliest
	// notAfter.
	NextUpdate time.Time `json:"next_update"`
}

// Inspect reads every piece of a collateral folder: its TCB infos (tcb-info.json and
// tcb-info-<fmspc>.json), QE identity, CRLs and issuer chains, without checking signatures.
func Inspect(dir string) ([]Piece, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("collateral %s: %w", dir, err)
	}
	var pieces []Piece
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || strings.HasPrefix(name, ".") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("collateral %s: %w", dir, err)
		}
		p, err := inspectFile(name, b)
		if err != nil {
			return nil, fmt.Errorf("collateral %s: %s: %w", dir, name, err)
		}
		if p != nil {
			pieces = append(pieces, *p)
		}
	}
	if len(pieces) == 0 {
		return nil, fmt.Errorf("collateral %s: no collateral there (see docs/collateral.md for its files)", dir)
	}
	return pieces, nil
}

// inspectFile reads one file of a collateral folder; nil for a file of another name.
func inspectFile(name string, b []byte) (*Piece, error) {
	p := &Piece{File: name}
	switch {
	case name == TCBInfoFile || strings.HasPrefix(name, "tcb-info-") && strings.HasSuffix(name, ".json"):
		m, err := readMeta(b, "tcbInfo")
		if err != nil {
			return nil, err
		}
		p.What, p.ID, p.Version, p.FMSPC = "TCB info", m.ID, m.Version, strings.ToUpper(m.FMSPC)
		p.TCBEvaluationDataNumber, p.IssueDate, p.NextUpdate = m.TCBEvaluationDataNumber, m.IssueDate, m.NextUpdate
	case name == QEIdentityFile:
		m, err := readMeta(b, "enclaveIdentity")
		if err != nil {
			return nil, err
		}
		p.What, p.ID, p.Version = "QE identity", m.ID, m.Version
		p.TCBEvaluationDataNumber, p.IssueDate, p.NextUpdate = m.TCBEvaluationDataNumber, m.IssueDate, m.NextUpdate
	case name == PCKCRLFile || name == RootCACRLFile:
		_, crl, err := decodeCRL(b)
		if err != nil {
			return nil, err
		}
		p.What, p.ID, p.Revoked = "CRL", crl.Issuer.CommonName, len(crl.RevokedCertificateEntries)
		p.IssueDate, p.NextUpdate = crl.ThisUpdate, crl.NextUpdate
	case strings.HasSuffix(name, "-issuer-chain.pem"):
		p.What = "certificates"
		for rest := b; ; {
			var block *pem.Block
			if block, rest = pem.Decode(rest); block == nil {
				break
			}
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, err
			}
			if p.ID == "" {
				p.ID, p.IssueDate, p.NextUpdate = c.Subject.CommonName, c.NotBefore, c.NotAfter
			}
			if c.NotAfter.Before(p.NextUpdate) {
				p.NextUpdate = c.NotAfter
			}
		}
		if p.ID == "" {
			return nil, errors.New("no PEM certificate")
		}
	default:
		return nil, nil
	}
	return p, nil
}
