package snp

import (
	"errors"
	"fmt"
	"strings"

	"github.com/google/go-configfs-tsm/configfs/configfsi"
	"github.com/google/go-configfs-tsm/configfs/linuxtsm"
	"github.com/google/go-configfs-tsm/report"
	"github.com/google/go-sev-guest/client"

	"github.com/ppml/ppml/attest"
)

// tsmProvider is what configfs-tsm's "provider" attribute reads in an SEV-SNP guest.
const tsmProvider = "sev_guest"

// Attester produces SEV-SNP evidence: an attestation report that binds the report data, followed
// by the certificate table the host supplies (which may be empty). It implements
// [attest.Attester].
type Attester struct {
	quote func(reportData [64]byte) ([]byte, error)
}

var _ attest.Attester = (*Attester)(nil)

// NewAttester returns an Attester over a go-sev-guest quote provider, such as
// client.LinuxIoctlQuoteProvider (/dev/sev-guest) or a fake in tests.
func NewAttester(qp client.QuoteProvider) *Attester { return &Attester{quote: qp.GetRawQuote} }

// NewConfigFSAttester returns an Attester over a configfs-tsm client: the Linux one
// ([linuxtsm.MakeClient]) in a guest, or a fake in tests. It asks for the report at the driver's
// default VMPL and for the auxiliary blob, the host's certificate table.
func NewConfigFSAttester(c configfsi.Client) *Attester {
	return &Attester{quote: func(reportData [64]byte) ([]byte, error) {
		resp, err := report.Get(c, &report.Request{InBlob: reportData[:], GetAuxBlob: true})
		if err != nil {
			return nil, err
		}
		if p := strings.TrimSpace(resp.Provider); p != tsmProvider {
			return nil, fmt.Errorf("configfs-tsm reports come from %q, not %q: this is not an SEV-SNP guest", p, tsmProvider)
		}
		return append(resp.OutBlob, resp.AuxBlob...), nil
	}}
}

// OpenAttester returns an Attester over this machine's configfs-tsm
// (/sys/kernel/config/tsm/report) where the kernel has it, else over /dev/sev-guest.
func OpenAttester() (*Attester, error) {
	if c, err := linuxtsm.MakeClient(); err == nil {
		return NewConfigFSAttester(c), nil
	}
	if qp := new(client.LinuxIoctlQuoteProvider); qp.IsSupported() {
		return NewAttester(qp), nil
	}
	return nil, errors.New("neither configfs-tsm nor /dev/sev-guest is available")
}

// Kind returns attest.SNP.
func (a *Attester) Kind() attest.Kind { return attest.SNP }

// Attest returns evidence that binds reportData.
func (a *Attester) Attest(reportData attest.ReportData) ([]byte, error) {
	b, err := a.quote(reportData)
	if err != nil {
		return nil, fmt.Errorf("get SEV-SNP attestation report: %w", err)
	}
	return b, nil
}
