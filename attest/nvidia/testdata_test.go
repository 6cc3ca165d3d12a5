package nvidia

import (
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// Real H100 evidence, chains and an NVIDIA-signed VBIOS RIM; see testdata/attestation/README.md.
const testdata = "../../testdata/attestation/"

var (
	hopperNonce = mustHex("931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb")
	cocoNonce   = mustHex("87d8e24ab336adafe228d49e83d745f6dba4ae505372b6a5704820856b343fec")
	hopperTime  = time.Unix(1704067200, 0)
	realFWID    = "f5c384aebb579217a2c66b17ed0f28e6a9b8d639041acd7b4721cec004f7275494ba94bb5cdfdb3055ee051762b1f75d"
	realRIM     = "nvidia/nvtrust/1010_0200_882_96005E0003_PROD.swidtag"
)

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testdata, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func hopperEvidence(t testing.TB, name string) []byte {
	t.Helper()
	b, err := DecodeEvidence(readTestdata(t, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestHopperEvidenceVerifies(t *testing.T) {
	ev := hopperEvidence(t, "nvidia/trustee/hopperAttestationReport.txt")
	v, err := Verify(ev, readTestdata(t, "nvidia/trustee/hopper_cert_chain_case1.txt"), Options{Time: hopperTime, Nonce: hopperNonce})
	if err != nil {
		t.Fatal(err)
	}
	op := &v.Evidence.Response.Opaque
	// The claims Trustee derives from the same evidence (hopperAttestationReport-claims.txt).
	if v.Arch != "Hopper" || op.DriverVersion() != "550.90.07" || op.VBIOSVersion() != "96.00.9f.00.01" ||
		hex.EncodeToString(v.FWID) != realFWID || op.String(OpaqueProject) != "1010" ||
		op.String(OpaqueProjectSKU) != "0200" || op.String(OpaqueChipSKU) != "882" {
		t.Fatalf("claims: arch %q driver %q vbios %q fwid %x project %q", v.Arch, op.DriverVersion(), op.VBIOSVersion(), v.FWID, op.String(OpaqueProject))
	}
	if len(v.Evidence.Response.Blocks) != 64 || v.Evidence.SignedLen != 4021 || v.Evidence.Trailing != 0 {
		t.Fatalf("%d blocks, %d signed bytes, %d trailing", len(v.Evidence.Response.Blocks), v.Evidence.SignedLen, v.Evidence.Trailing)
	}
	if got := hex.EncodeToString(v.Evidence.Response.Block(2).Value); got != "8048dfd18fe229bf16eb9d30cca0f11a24dafe6eb731de1462984645a0b189b77c4e4e17de727a5e19e3d07de51da338" {
		t.Fatalf("block 2 = %s", got)
	}
	if v.Measurements != MeasurementsUnavailable || v.Revocation != "unchecked" {
		t.Fatalf("measurements %q revocation %q", v.Measurements, v.Revocation)
	}
}

func TestHopperCoCoEvidenceVerifies(t *testing.T) {
	ev := hopperEvidence(t, "nvidia/trustee/hopper_coco_report1.txt")
	v, err := Verify(ev, readTestdata(t, "nvidia/trustee/hopper_coco_certs1.txt"), Options{Time: hopperTime, Nonce: cocoNonce})
	if err != nil {
		t.Fatal(err)
	}
	if v.Evidence.Trailing != 1 || v.Evidence.SignedLen != 4033 {
		t.Fatalf("trailing %d, signed %d", v.Evidence.Trailing, v.Evidence.SignedLen)
	}
}

// The four chain cases end as Trustee's cert_chain.rs tests expect.
func TestHopperChainCases(t *testing.T) {
	ev := hopperEvidence(t, "nvidia/trustee/hopperAttestationReport.txt")
	for _, tc := range []struct {
		file string
		step Step
		err  error
	}{
		{"hopper_cert_chain_case1.txt", "", nil},
		{"hopper_cert_chain_case2.txt", StepChain, ErrUntrusted}, // only the root
		{"hopper_cert_chain_case3.txt", StepChain, ErrUntrusted}, // Provisioner ICA missing
		{"hopper_cert_chain_case4.txt", StepFWID, ErrFormat},     // leaf missing: no FWID extension
	} {
		_, err := Verify(ev, readTestdata(t, "nvidia/trustee/"+tc.file), Options{Time: hopperTime, Nonce: hopperNonce})
		if tc.err == nil {
			if err != nil {
				t.Errorf("%s: %v", tc.file, err)
			}
			continue
		}
		var e *Error
		if !errors.As(err, &e) || e.Step != tc.step || !errors.Is(err, tc.err) {
			t.Errorf("%s: got %v, want step %q wrapping %v", tc.file, err, tc.step, tc.err)
		}
	}
}

func TestHopperEvidenceRefused(t *testing.T) {
	good := hopperEvidence(t, "nvidia/trustee/hopperAttestationReport.txt")
	chain := readTestdata(t, "nvidia/trustee/hopper_cert_chain_case1.txt")
	flip := func(i int) []byte { b := slices.Clone(good); b[i] ^= 1; return b }
	for name, tc := range map[string]struct {
		ev    []byte
		chain []byte
		opts  Options
		step  Step
	}{
		"other nonce":       {good, chain, Options{Time: hopperTime, Nonce: cocoNonce}, StepNonce},
		"nonce changed":     {flip(4), chain, Options{Time: hopperTime, Nonce: flip(4)[4:36]}, StepSignature},
		"measurement byte":  {flip(112), chain, Options{Time: hopperTime, Nonce: hopperNonce}, StepSignature},
		"signature byte":    {flip(len(good) - 1), chain, Options{Time: hopperTime, Nonce: hopperNonce}, StepSignature},
		"other GPU's chain": {good, readTestdata(t, "nvidia/trustee/hopper_coco_certs1.txt"), Options{Time: hopperTime, Nonce: hopperNonce}, StepFWID},
		"before the chain":  {good, chain, Options{Time: time.Date(2019, 1, 1, 0, 0, 0, 0, time.UTC), Nonce: hopperNonce}, StepChain},
		"other root":        {good, chain, Options{Time: hopperTime, Nonce: hopperNonce, DeviceRoots: RIMRoots()}, StepChain},
		"truncated":         {good[:len(good)-1], chain, Options{Time: hopperTime, Nonce: hopperNonce}, StepEvidence},
	} {
		_, err := Verify(tc.ev, tc.chain, tc.opts)
		var e *Error
		if !errors.As(err, &e) || e.Step != tc.step {
			t.Errorf("%s: got %v, want step %q", name, err, tc.step)
		}
	}
}

// NVIDIA's own signed VBIOS RIM: its XML signature (C14N 1.1, ECDSA-SHA384) verifies to the
// pinned CoRIM root while its signer is valid (2023-09-06..2025-09-05), and not after.
func TestRealRIMSignature(t *testing.T) {
	b := readTestdata(t, realRIM)
	r, err := VerifyRIM(b, RIMOptions{Time: time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	if r.Version != "96.00.5e.00.03" || len(r.Measurements) != 64 || len(r.Chain) != 4 || len(r.Measurements[12].Values) != 4 {
		t.Fatalf("version %q, %d measurements, chain %d", r.Version, len(r.Measurements), len(r.Chain))
	}
	if _, err := VerifyRIM(b, RIMOptions{Time: time.Date(2025, 10, 1, 0, 0, 0, 0, time.UTC)}); !errors.Is(err, ErrExpired) {
		t.Errorf("after the signer expired: %v", err)
	}
	tampered := slices.Clone(b)
	i := indexOf(tampered, "c3f65ef7") // index 1's golden value
	tampered[i] = 'd'
	if _, err := VerifyRIM(tampered, RIMOptions{Time: time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)}); !errors.Is(err, ErrSignature) {
		t.Errorf("tampered measurement: %v", err)
	}
	if _, err := VerifyRIM(b, RIMOptions{Time: time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC), Roots: DeviceRoots()}); !errors.Is(err, ErrUntrusted) {
		t.Errorf("other root: %v", err)
	}
}

func indexOf(b []byte, s string) int {
	for i := range b {
		if string(b[i:min(len(b), i+len(s))]) == s {
			return i
		}
	}
	panic(s)
}

// The real RIM is for VBIOS 96.00.5e.00.03, the real evidence from 96.00.9f.00.01: Verify
// refuses it for its version, and the comparison finds where the firmware differs.
func TestRealRIMAgainstRealEvidence(t *testing.T) {
	ev := hopperEvidence(t, "nvidia/trustee/hopperAttestationReport.txt")
	chain := readTestdata(t, "nvidia/trustee/hopper_cert_chain_case1.txt")
	rimTime := time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)
	v, err := Verify(ev, chain, Options{Time: rimTime, Nonce: hopperNonce, RIMs: [][]byte{readTestdata(t, realRIM)}})
	var e *Error
	if !errors.As(err, &e) || e.Step != StepRIM || !errors.Is(err, ErrMismatch) {
		t.Fatalf("got %v, want a RIM version mismatch", err)
	}
	if len(v.RIMs) != 0 {
		t.Fatalf("rims %+v", v.RIMs)
	}
	r, err := VerifyRIM(readTestdata(t, realRIM), RIMOptions{Time: rimTime})
	if err != nil {
		t.Fatal(err)
	}
	parsed, _ := ParseEvidence(ev)
	got, err := CompareMeasurements(&parsed.Response, []*RIM{r})
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{1, 2, 9, 11}; !slices.Equal(got, want) {
		t.Fatalf("mismatched %v, want %v", got, want)
	}
}
