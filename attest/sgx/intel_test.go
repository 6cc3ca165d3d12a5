package sgx

import (
	"context"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/ppml/ppml/collateral"
)

func TestIntelVerifier(t *testing.T) {
	calls := 0
	var asked collateral.Platform
	iv := &IntelVerifier{SkipCRL: true, Source: func(_ context.Context, p collateral.Platform) (*collateral.Bundle, error) {
		calls++
		asked = p
		return oasisBundle(t), nil
	}}
	quote := read(t, oasisQuote)
	for range 2 {
		claims, err := iv.Verify(context.Background(), quote, sgx1Time)
		if err != nil {
			t.Fatal(err)
		}
		if claims.Platform != "intel" || claims.TCBStatus != StatusSWHardeningNeeded {
			t.Errorf("claims %+v", claims)
		}
	}
	// The collateral is asked for once, and kept until its next update.
	if want := (collateral.Platform{TEE: collateral.SGX, FMSPC: "00606A000000", CA: collateral.PlatformCA}); asked != want || calls != 1 {
		t.Errorf("asked for %v (%d calls), want %v once", asked, calls, want)
	}
	if _, err := iv.Verify(context.Background(), quote, time.Unix(1673786737, 0)); err == nil || calls != 2 {
		t.Errorf("after the next update: %v, %d calls, want the collateral asked for again", err, calls)
	}
	// A chain that does not lead to Intel's root at that time fetches no collateral.
	before := calls
	if _, err := iv.Verify(context.Background(), quote, time.Unix(1891163522, 0)); !errors.Is(err, ErrUntrusted) || calls != before {
		t.Errorf("expired PCK chain: %v, %d collateral requests", err, calls-before)
	}
	missing := &IntelVerifier{Source: func(context.Context, collateral.Platform) (*collateral.Bundle, error) {
		return nil, errors.New("no such file")
	}}
	if _, err := missing.Verify(context.Background(), quote, sgx1Time); err == nil {
		t.Error("no collateral: no error")
	}
}

func TestCheckAttributes(t *testing.T) {
	for flags, ok := range map[uint64]bool{
		AttrInit | AttrMode64Bit:                true,
		AttrInit | AttrMode64Bit | AttrDebug:    true,
		AttrMode64Bit:                           false,
		AttrInit:                                false,
		AttrInit | AttrMode64Bit | AttrProvKey:  false,
		AttrInit | AttrMode64Bit | AttrEInitKey: false,
	} {
		var b ReportBody
		binary.LittleEndian.PutUint64(b.Attributes[:8], flags)
		if err := checkAttributes(&b); (err == nil) != ok {
			t.Errorf("flags %#x: %v", flags, err)
		}
	}
}

// TestIntelVerifierContext: the collateral is fetched under the caller's context, so that a
// cancelled request ends the wait for it.
func TestIntelVerifierContext(t *testing.T) {
	iv := &IntelVerifier{SkipCRL: true, Source: func(ctx context.Context, _ collateral.Platform) (*collateral.Bundle, error) {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(10 * time.Second):
			return nil, errors.New("the caller's context was not passed down")
		}
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := iv.Verify(ctx, read(t, oasisQuote), sgx1Time); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want the context's deadline", err)
	}
}
