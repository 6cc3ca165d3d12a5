package ratls

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"

	"github.com/fxamacker/cbor/v2"

	"github.com/ppml/ppml/attest"
)

// oidGPUEvidence is ppml's extension for the evidence of the GPUs attached to the TEE. It is in
// ppml's own arc (docs/gpu.md), outside Gramine's format: Gramine's verifier ignores it, as it
// ignores every extension it does not know.
var oidGPUEvidence = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1, 1}

// Bounds of the GPU evidence extension: a Hopper GPU's evidence is about 4 KiB and its chain
// 3 KiB; Go's TLS accepts certificate messages up to 256 KiB.
const (
	MaxGPUs            = 16
	maxGPUEvidenceSize = 192 << 10
)

// gpuExtension asks g for the evidence of its GPUs, each answering nonce, and returns the
// extension that carries it: a CBOR array with, for each GPU, the array [bstr evidence,
// [bstr certificate, ...]], the device certificates in DER, leaf first.
func gpuExtension(g attest.GPUAttester, nonce [32]byte) (pkix.Extension, error) {
	gpus, err := g.AttestGPUs(nonce)
	if err != nil {
		return pkix.Extension{}, fmt.Errorf("GPU attestation: %w", err)
	}
	if len(gpus) == 0 || len(gpus) > MaxGPUs {
		return pkix.Extension{}, fmt.Errorf("GPU attestation: %d GPUs (want 1 to %d)", len(gpus), MaxGPUs)
	}
	items := make([][]any, len(gpus))
	for i, e := range gpus {
		items[i] = []any{e.Evidence, e.CertChain}
	}
	value, err := encMode.Marshal(items)
	if err != nil {
		return pkix.Extension{}, fmt.Errorf("GPU evidence: %w", err)
	}
	if len(value) > maxGPUEvidenceSize {
		return pkix.Extension{}, fmt.Errorf("GPU evidence of %d bytes exceeds %d", len(value), maxGPUEvidenceSize)
	}
	return pkix.Extension{Id: oidGPUEvidence, Value: value}, nil
}

// GPUEvidence returns the GPU evidence of an RA-TLS certificate (none when it has no GPU
// extension) and the nonce every GPU's evidence must answer: the key binding that the CPU
// evidence's report data begins with ([Evidence].Binding), so that the GPUs' evidence is bound
// to the certificate's key as the CPU's is. The evidence is not verified here (attest/nvidia
// does that).
func GPUEvidence(cert *x509.Certificate) ([]attest.GPUEvidence, [32]byte, error) {
	ev, err := ExtractEvidence(cert)
	if err != nil {
		return nil, [32]byte{}, err
	}
	for _, e := range cert.Extensions {
		if e.Id.Equal(oidGPUEvidence) {
			gpus, err := parseGPUEvidence(e.Value)
			if err != nil {
				return nil, ev.Binding, fmt.Errorf("GPU evidence extension (%s): %w", oidGPUEvidence, err)
			}
			return gpus, ev.Binding, nil
		}
	}
	return nil, ev.Binding, nil
}

func parseGPUEvidence(b []byte) ([]attest.GPUEvidence, error) {
	if len(b) > maxGPUEvidenceSize {
		return nil, fmt.Errorf("%w: %d bytes (at most %d)", ErrMalformed, len(b), maxGPUEvidenceSize)
	}
	var items []cbor.RawMessage
	if err := decodeAs("GPU list", b, majorArray, &items); err != nil {
		return nil, err
	}
	if len(items) == 0 || len(items) > MaxGPUs {
		return nil, fmt.Errorf("%w: %d GPUs (want 1 to %d)", ErrMalformed, len(items), MaxGPUs)
	}
	gpus := make([]attest.GPUEvidence, len(items))
	for i, item := range items {
		what := fmt.Sprintf("GPU %d", i)
		rawEvidence, rawChain, err := decodePair(what, item)
		if err != nil {
			return nil, err
		}
		if err := decodeAs(what+" evidence", rawEvidence, majorBytes, &gpus[i].Evidence); err != nil {
			return nil, err
		}
		var chain []cbor.RawMessage
		if err := decodeAs(what+" certificate chain", rawChain, majorArray, &chain); err != nil {
			return nil, err
		}
		if len(chain) == 0 {
			return nil, fmt.Errorf("%w: %s has no certificate", ErrMalformed, what)
		}
		for k, c := range chain {
			var der []byte
			if err := decodeAs(fmt.Sprintf("%s certificate %d", what, k), c, majorBytes, &der); err != nil {
				return nil, err
			}
			gpus[i].CertChain = append(gpus[i].CertChain, der)
		}
	}
	return gpus, nil
}
