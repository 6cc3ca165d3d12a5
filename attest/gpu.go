package attest

// GPUEvidence is one GPU's attestation evidence as its attester collected it: for NVIDIA GPUs,
// the SPDM GET_MEASUREMENTS request and signed response (attest/nvidia) and the GPU's device
// certificate chain, DER certificates leaf first.
type GPUEvidence struct {
	Evidence  []byte
	CertChain [][]byte
}

// GPUAttester produces evidence about the GPUs attached to a TEE.
type GPUAttester interface {
	// AttestGPUs returns the evidence of every GPU, each answering nonce.
	AttestGPUs(nonce [32]byte) ([]GPUEvidence, error)
}

// WithGPUs is an Attester of a CPU TEE together with the GPUs attached to it: RA-TLS
// certificates made with it carry both kinds of evidence (package ratls).
type WithGPUs struct {
	Attester
	GPUs GPUAttester
}

// AttestGPUs returns the evidence of the GPUs.
func (w WithGPUs) AttestGPUs(nonce [32]byte) ([]GPUEvidence, error) { return w.GPUs.AttestGPUs(nonce) }

// AttestWithLog attests with the CPU's attester, with its event log if it keeps one.
func (w WithGPUs) AttestWithLog(reportData ReportData) ([]byte, []byte, error) {
	return AttestWithLog(w.Attester, reportData)
}

// Unwrap returns the CPU's attester.
func (w WithGPUs) Unwrap() Attester { return w.Attester }

// NVIDIA is the root of trust of genuine NVIDIA GPUs: NVIDIA's Device Identity CA (attest/nvidia).
const NVIDIA Platform = "nvidia"
