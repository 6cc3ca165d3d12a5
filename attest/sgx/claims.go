package sgx

import "github.com/ppml/ppml/attest"

// Claims returns what the verdict says as attest.Claims; platform names the root of trust that
// vouched for the quote.
func (v *Verdict) Claims(platform attest.Platform) *attest.Claims {
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
