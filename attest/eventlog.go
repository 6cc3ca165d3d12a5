package attest

// LogAttester is an Attester whose evidence goes with an event log of the TEE's run-time
// measurements: a TDX trust domain's RTMR3 log (attest/rtmr).
type LogAttester interface {
	Attester
	// AttestWithLog returns evidence that binds reportData and the event log that made the
	// run-time measurements the evidence reports.
	AttestWithLog(reportData ReportData) (evidence, log []byte, err error)
}

// AttestWithLog attests with a and returns the event log that goes with the evidence: nil
// where a keeps none.
func AttestWithLog(a Attester, reportData ReportData) (evidence, log []byte, err error) {
	if l, ok := a.(LogAttester); ok {
		return l.AttestWithLog(reportData)
	}
	evidence, err = a.Attest(reportData)
	return evidence, nil, err
}

// Unwrap returns the attester that a wraps ([ForWorkload], [WithGPUs]), nil where it wraps
// none: for what the wrapped attester offers besides attesting.
func Unwrap(a Attester) Attester {
	if w, ok := a.(interface{ Unwrap() Attester }); ok {
		return w.Unwrap()
	}
	return nil
}
