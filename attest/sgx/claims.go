package sgx

import (
	"slices"

	"github.com/ppml/ppml/attest"
)

// Claims returns what the verdict says as attest.Claims: of an SGX enclave or a TDX trust domain;
// platform names the root of trust that vouched for the quote.
func (v *Verdict) Claims(platform attest.Platform) *attest.Claims {
	tcbDate := v.TCBDate
	c := &attest.Claims{
		TEE:                     attest.SGX,
		Platform:                platform,
		Debug:                   v.Debug(),
		TCBStatus:               v.TCBStatus,
		AdvisoryIDs:             append([]string{}, v.AdvisoryIDs...),
		TCBDate:                 &tcbDate,
		TCBEvaluationDataNumber: v.TCBEvaluationDataNumber,
		QEStatus:                v.QEStatus,
	}
	if tcbDate.IsZero() {
		c.TCBDate = nil
	}
	for _, b := range v.Behind {
		c.Behind = append(c.Behind, attest.Behind(b))
	}
	if m := v.Module; m != nil {
		c.TDXModule = &attest.TDXModule{ID: m.ID, ISVSVN: m.ISVSVN, Status: m.Status, TCBDate: m.TCBDate, AdvisoryIDs: append([]string{}, m.AdvisoryIDs...)}
	}
	if td := v.Quote.TD; td != nil {
		c.TEE = attest.TDX
		tdClaims(c, td, v.Quote.BodyType == BodyTD15)
		return c
	}
	b := &v.Quote.Body
	prodID, svn := b.ISVProdID, b.ISVSVN
	c.MREnclave, c.MRSigner = attest.Hex(b.MREnclave[:]), attest.Hex(b.MRSigner[:])
	c.ISVProdID, c.ISVSVN = &prodID, &svn
	c.ReportData = attest.Hex(b.ReportData[:])
	return c
}

// tdClaims fills in the claims of a trust domain.
func tdClaims(c *attest.Claims, td *TDReport, td15 bool) {
	hex := func(b []byte) attest.Hex { return slices.Clone(b) }
	c.MRTD, c.ReportData = hex(td.MRTD[:]), hex(td.ReportData[:])
	for i := range td.RTMRs {
		c.RTMRs = append(c.RTMRs, hex(td.RTMRs[i][:]))
	}
	a := td.Attributes()
	c.TD = &attest.TD{
		Attributes: attest.TDAttributes{
			Raw: hex(td.TDAttributes[:]), Debug: a&TDAttrDebug != 0, SEPTVEDisable: a&TDAttrSEPTVEDisable != 0,
			Migratable: a&TDAttrMigratable != 0, PKS: a&TDAttrPKS != 0, KL: a&TDAttrKL != 0,
			PerfMon: a&TDAttrPerfmon != 0, ICSSD: a&TDAttrICSSD != 0, LASS: a&TDAttrLASS != 0,
		},
		XFAM: hex(td.XFAM[:]), MRConfigID: hex(td.MRConfigID[:]), MROwner: hex(td.MROwner[:]),
		MROwnerConfig: hex(td.MROwnerConfig[:]), TEETCBSVN: hex(td.TEETCBSVN[:]), MRSEAM: hex(td.MRSEAM[:]),
		MRSignerSEAM: hex(td.MRSignerSEAM[:]), SEAMAttributes: hex(td.SEAMAttributes[:]),
	}
	if td15 {
		c.TD.TEETCBSVN2, c.TD.MRServiceTD = hex(td.TEETCBSVN2[:]), hex(td.MRServiceTD[:])
	}
}
