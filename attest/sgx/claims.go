package sgx

import (
	"context"
	"time"

	"github.com/ppml/ppml/attest"
)

// Claims returns what the verdict says as attest.Claims; platform names the root of trust that
// vouched for the quote ("intel", or "simulated").
func (v *Verdict) Claims(platform string) *attest.Claims {
	b := &v.Quote.Body
	prodID, svn := b.ISVProdID, b.ISVSVN
	return &attest.Claims{
		TEE:         attest.SGX,
		Platform:    platform,
		MREnclave:   attest.Hex(b.MREnclave[:]),
		MRSigner:    attest.Hex(b.MRSigner[:]),
		ISVProdID:   &prodID,
		ISVSVN:      &svn,
		Debug:       b.Debug(),
		TCBStatus:   v.TCBStatus,
		AdvisoryIDs: append([]string{}, v.AdvisoryIDs...),
		ReportData:  attest.Hex(b.ReportData[:]),
	}
}

// AttestVerifier is a Verifier seen as an attest.Verifier: it returns the claims of the quotes it
// verifies, naming Platform as their root of trust.
type AttestVerifier struct {
	Verifier *Verifier
	Platform string
}

// Kind returns attest.SGX.
func (a AttestVerifier) Kind() attest.Kind { return attest.SGX }

// Verify verifies an SGX quote at time at and returns its claims.
func (a AttestVerifier) Verify(_ context.Context, quote []byte, at time.Time) (*attest.Claims, error) {
	v, err := a.Verifier.Verify(quote, at)
	if err != nil {
		return nil, err
	}
	return v.Claims(a.Platform), nil
}
