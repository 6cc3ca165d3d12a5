package attest

// SNPClaims are the fields of an SEV-SNP attestation report that a policy may judge, beside
// the measurement, debug, TCB status and report data that every kind of evidence has.
type SNPClaims struct {
	// HostData is the 32 bytes the host gave at launch.
	HostData Hex `json:"host_data"`
}
