package attest_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/ppml/ppml/attest"
	"github.com/ppml/ppml/attest/sim"
)

// TestAnyOf trusts two simulated platforms: quotes from either verify, a third's do not.
func TestAnyOf(t *testing.T) {
	now := time.Now()
	var platforms []*sim.Platform
	var any attest.AnyOf
	for i, status := range []string{"UpToDate", "OutOfDate", "UpToDate"} {
		p, err := sim.Init(filepath.Join(t.TempDir(), "p"), status, now)
		if err != nil {
			t.Fatal(err)
		}
		platforms = append(platforms, p)
		if i < 2 {
			v, err := p.Verifier()
			if err != nil {
				t.Fatal(err)
			}
			any = append(any, v)
		}
	}
	for i, p := range platforms {
		quote, err := sim.Attester{Platform: p}.Attest(attest.ReportData{})
		if err != nil {
			t.Fatal(err)
		}
		claims, err := any.Verify(context.Background(), quote, now)
		switch {
		case i < 2 && err != nil:
			t.Errorf("platform %d: %v", i, err)
		case i < 2 && claims.TCBStatus != []string{"UpToDate", "OutOfDate"}[i]:
			t.Errorf("platform %d: verified by the wrong verifier (status %s)", i, claims.TCBStatus)
		case i == 2 && !errors.Is(err, attest.ErrUntrustedRoot):
			t.Errorf("untrusted platform: %v", err)
		}
	}
	if any.Kind() != attest.SGX {
		t.Errorf("kind %s", any.Kind())
	}
}
