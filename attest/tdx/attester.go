package tdx

import (
	"fmt"
	"strings"

	"github.com/google/go-configfs-tsm/configfs/configfsi"
	"github.com/google/go-configfs-tsm/configfs/linuxtsm"
	"github.com/google/go-configfs-tsm/report"

	"github.com/ppml/ppml/attest"
)

// tsmProvider is what configfs-tsm's "provider" attribute reads in a TDX guest.
const tsmProvider = "tdx_guest"

// Attester produces TDX quotes through configfs-tsm: it writes the report data to a report
// entry's inblob and reads the quote from its outblob. It implements [attest.Attester].
type Attester struct {
	client configfsi.Client
}

var _ attest.Attester = (*Attester)(nil)

// NewAttester returns an Attester over a configfs-tsm client: the Linux one
// ([linuxtsm.MakeClient]) in a TD, or a fake in tests.
func NewAttester(client configfsi.Client) *Attester { return &Attester{client: client} }

// OpenAttester returns an Attester over this machine's /sys/kernel/config/tsm/report. It fails
// where the kernel offers no configfs-tsm reports; whether they come from TDX shows on [Attester.Attest].
func OpenAttester() (*Attester, error) {
	c, err := linuxtsm.MakeClient()
	if err != nil {
		return nil, fmt.Errorf("configfs-tsm: %w", err)
	}
	return NewAttester(c), nil
}

// Kind returns attest.TDX.
func (a *Attester) Kind() attest.Kind { return attest.TDX }

// Attest returns a TDX quote that binds reportData. It fails unless the configfs-tsm provider is
// TDX's.
func (a *Attester) Attest(reportData attest.ReportData) ([]byte, error) {
	resp, err := report.Get(a.client, &report.Request{InBlob: reportData[:]})
	if err != nil {
		return nil, fmt.Errorf("configfs-tsm report: %w", err)
	}
	if p := strings.TrimSpace(resp.Provider); p != tsmProvider {
		return nil, fmt.Errorf("configfs-tsm reports come from %q, not %q: this is not a TDX guest", p, tsmProvider)
	}
	return resp.OutBlob, nil
}
