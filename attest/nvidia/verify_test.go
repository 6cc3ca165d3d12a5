package nvidia

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"
)

// A GPU and RIMs signed under test roots, injected as the trusted roots.
type rimSetup struct {
	gpu          *testGPU
	pki          *testRIMPKI
	nonce        []byte
	driver       []byte // RIM for indices 0-3, matching
	vbios        []byte // RIM for indices 4-7, matching (index 5 with a second alternative)
	ev           []byte
	opts         Options
	driverValues map[int][][]byte
}

func newRIMSetup(t *testing.T) *rimSetup {
	s := &rimSetup{gpu: newTestGPU(t), nonce: bytes.Repeat([]byte{7}, 32)}
	s.pki = newTestRIMPKI(t, t2020, t2040)
	s.ev = s.gpu.evidence(t, s.nonce, 0)
	s.driverValues = map[int][][]byte{}
	vbiosValues := map[int][][]byte{}
	for i, v := range s.gpu.blocks {
		if i < 4 {
			s.driverValues[i] = [][]byte{v}
		} else {
			vbiosValues[i] = [][]byte{v}
		}
	}
	vbiosValues[5] = [][]byte{make([]byte, 48), s.gpu.blocks[5]}
	s.driver = s.pki.sign(t, rimXML("550.90.07", s.driverValues, 8))
	s.vbios = s.pki.sign(t, rimXML("96.00.9f.00.01", vbiosValues, 8))
	s.opts = Options{Time: tNow, Nonce: s.nonce, DeviceRoots: poolOf(s.gpu.root), RIMRoots: poolOf(s.pki.root)}
	return s
}

func (s *rimSetup) verify(mod func(*Options)) (*Verdict, error) {
	o := s.opts
	mod(&o)
	return Verify(s.ev, s.gpu.chainPEM(), o)
}

func wantStep(t *testing.T, name string, err error, step Step, sentinel error) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) || e.Step != step || (sentinel != nil && !errors.Is(err, sentinel)) {
		t.Errorf("%s: got %v, want step %q wrapping %v", name, err, step, sentinel)
	}
}

func TestRIMsMatch(t *testing.T) {
	s := newRIMSetup(t)
	v, err := s.verify(func(o *Options) { o.RIMs = [][]byte{s.driver, s.vbios}; o.RequireRIMs = true })
	if err != nil {
		t.Fatal(err)
	}
	if v.Measurements != MeasurementsMatch || len(v.Mismatched) != 0 || len(v.RIMs) != 2 ||
		v.RIMs[0].Component != "driver" || v.RIMs[1].Component != "vbios" || !v.RIMs[0].Valid || v.RIMs[1].ID != "test-96.00.9f.00.01" {
		t.Fatalf("%+v", v)
	}
	if _, err := s.verify(func(o *Options) {}); err != nil {
		t.Errorf("no RIM: %v", err)
	}
	_, err = s.verify(func(o *Options) { o.RequireRIMs = true; o.RIMs = [][]byte{s.vbios} })
	wantStep(t, "one RIM, required both", err, StepRIM, ErrMissingRIM)
}

func TestRIMsRefused(t *testing.T) {
	s := newRIMSetup(t)
	// A driver RIM whose index 2 expects other bytes.
	bad := map[int][][]byte{}
	for k, v := range s.driverValues {
		bad[k] = v
	}
	bad[2] = [][]byte{bytes.Repeat([]byte{0xEE}, 48)}
	mismatching := s.pki.sign(t, rimXML("550.90.07", bad, 8))
	v, err := s.verify(func(o *Options) { o.RIMs = [][]byte{mismatching, s.vbios} })
	wantStep(t, "mismatching RIM", err, StepMeasurements, ErrMismatch)
	if v == nil || v.Measurements != MeasurementsMismatch || !slices.Equal(v.Mismatched, []int{2}) {
		t.Fatalf("verdict %+v", v)
	}

	expired := newTestRIMPKI(t, t2020, tNow.Add(-time.Hour))
	v, err = s.verify(func(o *Options) {
		o.RIMRoots = poolOf(expired.root)
		o.RIMs = [][]byte{expired.sign(t, rimXML("550.90.07", s.driverValues, 8))}
	})
	wantStep(t, "expired RIM signer", err, StepRIM, ErrExpired)
	if v == nil || len(v.RIMs) != 1 || v.RIMs[0].Valid {
		t.Errorf("expired RIM reported as %+v", v)
	}

	_, err = s.verify(func(o *Options) {
		o.RIMs = [][]byte{newTestRIMPKI(t, t2020, t2040).sign(t, rimXML("550.90.07", s.driverValues, 8))}
	})
	wantStep(t, "RIM under another root", err, StepRIM, ErrUntrusted)

	_, err = s.verify(func(o *Options) { o.RIMs = [][]byte{s.pki.sign(t, rimXML("550.54.14", s.driverValues, 8))} })
	wantStep(t, "RIM for another driver", err, StepRIM, ErrMismatch)

	// A RIM of the same version for another chip: a Blackwell RIM for this Hopper GPU.
	_, err = s.verify(func(o *Options) {
		o.RIMs = [][]byte{s.pki.sign(t, strings.ReplaceAll(rimXML("550.90.07", s.driverValues, 8), "GH100", "GB100"))}
	})
	wantStep(t, "RIM for another architecture", err, StepRIM, ErrMismatch)
	if err == nil || !strings.Contains(err.Error(), "is for a GB100, but the GPU is Hopper") {
		t.Errorf("RIM for another architecture: %v", err)
	}

	_, err = s.verify(func(o *Options) { o.RIMs = [][]byte{s.driver, s.driver} })
	wantStep(t, "two driver RIMs", err, StepRIM, nil)

	both := map[int][][]byte{0: s.driverValues[0], 4: {s.gpu.blocks[4]}}
	_, err = s.verify(func(o *Options) { o.RIMs = [][]byte{s.pki.sign(t, rimXML("550.90.07", both, 8)), s.vbios} })
	wantStep(t, "index claimed twice", err, StepMeasurements, ErrMismatch)

	tampered := bytes.Replace(s.driver, []byte(`index="1" active="True"`), []byte(`index="1" active="False"`), 1)
	_, err = s.verify(func(o *Options) { o.RIMs = [][]byte{tampered} })
	wantStep(t, "tampered RIM", err, StepRIM, ErrSignature)

	wrapped := bytes.Replace(s.driver, []byte("</SoftwareIdentity>"), []byte("<Extra><ds:Signature xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\"/></Extra></SoftwareIdentity>"), 1)
	_, err = s.verify(func(o *Options) { o.RIMs = [][]byte{wrapped} })
	wantStep(t, "second signature", err, StepRIM, ErrFormat)
}

func TestSyntheticEvidence(t *testing.T) {
	s := newRIMSetup(t)
	trailing := s.gpu.evidence(t, s.nonce, 3)
	v, err := Verify(trailing, s.gpu.chainPEM(), s.opts)
	if err != nil || v.Evidence.Trailing != 3 {
		t.Fatalf("trailing bytes: %v", err)
	}
	// NVIDIA's own root does not vouch for the test GPU.
	_, err = Verify(s.ev, s.gpu.chainPEM(), Options{Time: tNow, Nonce: s.nonce})
	wantStep(t, "default root", err, StepChain, ErrUntrusted)
	// A chain whose leaf carries another FWID.
	key := s.gpu.leaf.key
	other := newLeafWithKey(t, s.gpu.ica, "GH100 A01 GSP FMC LF", key, hopperFWIDExt(t, &key.PublicKey, make([]byte, 48)))
	_, err = Verify(s.ev, pemOf(other, s.gpu.ica, s.gpu.root), s.opts)
	wantStep(t, "other leaf", err, StepFWID, ErrMismatch)
}

func TestOCSP(t *testing.T) {
	s := newRIMSetup(t)
	g, p := s.gpu, s.pki
	good := func() memOCSP {
		return memOCSP{
			OCSPFileName(g.ica.cert):    ocspFor(t, g.ica.cert, g.root, ocsp.Good, 0, tNow.Add(-time.Hour), tNow.Add(time.Hour)),
			OCSPFileName(p.signer.cert): ocspFor(t, p.signer.cert, p.ca, ocsp.Good, 0, tNow.Add(-time.Hour), tNow.Add(time.Hour)),
			OCSPFileName(p.ca.cert):     ocspFor(t, p.ca.cert, p.root, ocsp.Good, 0, tNow.Add(-time.Hour), tNow.Add(time.Hour)),
		}
	}
	v, err := s.verify(func(o *Options) { o.OCSP = good(); o.RIMs = [][]byte{s.driver} })
	if err != nil || v.Revocation != "good" {
		t.Fatalf("all good: %v", err)
	}
	for name, tc := range map[string]struct {
		cert      *testCA
		issuer    *testCA
		status    int
		reason    int
		this      time.Time
		next      time.Time
		allowHold bool
		sentinel  error
	}{
		"device CA revoked":  {g.ica, g.root, ocsp.Revoked, ocsp.KeyCompromise, tNow.Add(-time.Hour), tNow.Add(time.Hour), false, ErrRevoked},
		"RIM signer revoked": {p.signer, p.ca, ocsp.Revoked, ocsp.Superseded, tNow.Add(-time.Hour), tNow.Add(time.Hour), false, ErrRevoked},
		"on hold":            {g.ica, g.root, ocsp.Revoked, ocsp.CertificateHold, tNow.Add(-time.Hour), tNow.Add(time.Hour), false, ErrRevoked},
		"on hold, allowed":   {g.ica, g.root, ocsp.Revoked, ocsp.CertificateHold, tNow.Add(-time.Hour), tNow.Add(time.Hour), true, nil},
		"unknown":            {g.ica, g.root, ocsp.Unknown, 0, tNow.Add(-time.Hour), tNow.Add(time.Hour), false, ErrRevoked},
		"stale":              {g.ica, g.root, ocsp.Good, 0, tNow.Add(-48 * time.Hour), tNow.Add(-24 * time.Hour), false, ErrExpired},
		"signed by another":  {g.ica, p.ca, ocsp.Good, 0, tNow.Add(-time.Hour), tNow.Add(time.Hour), false, ErrFormat},
	} {
		src := good()
		src[OCSPFileName(tc.cert.cert)] = ocspFor(t, tc.cert.cert, tc.issuer, tc.status, tc.reason, tc.this, tc.next)
		_, err := s.verify(func(o *Options) { o.OCSP = src; o.AllowHold = tc.allowHold; o.RIMs = [][]byte{s.driver} })
		if tc.sentinel == nil {
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
			continue
		}
		wantStep(t, name, err, StepRevocation, tc.sentinel)
	}
	src := good()
	delete(src, OCSPFileName(g.ica.cert))
	_, err = s.verify(func(o *Options) { o.OCSP = src })
	wantStep(t, "missing response", err, StepRevocation, ErrNoRevocationData)
}
