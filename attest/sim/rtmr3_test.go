package sim

import (
	"context"
	"testing"
	"time"

	"github.com/ppml/ppml/attest"
	"github.com/ppml/ppml/attest/rtmr"
)

// The TD's RTMR3 log is kept in the platform's folder beside its RTMRs: extensions by different
// processes accumulate in both, and the log read with a quote replays to the quote's RTMR3.
func TestRTMR3LogAccumulates(t *testing.T) {
	p := newTDPlatform(t, 5, "")
	v, err := p.Verifier()
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		again, err := Load(p.Dir) // another process, as it were
		if err != nil {
			t.Fatal(err)
		}
		if err := again.TDAttester().ExtendRTMR3(rtmr.ManifestEvent([32]byte{byte(i)})); err != nil {
			t.Fatal(err)
		}
	}
	quote, log, err := attest.AttestWithLog(p.TDAttester(), attest.ReportData{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(context.Background(), quote, now.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	events, err := rtmr.Parse(log)
	if err != nil || len(events) != 3 {
		t.Fatalf("%d events, %v", len(events), err)
	}
	if err := rtmr.Check(events, c.RTMRs[3]); err != nil {
		t.Error(err)
	}
	// RTMR3 extended behind the log's back no longer replays.
	if _, err := p.ExtendRTMR(3, events[0].Digest); err != nil {
		t.Fatal(err)
	}
	quote, log, err = attest.AttestWithLog(p.TDAttester(), attest.ReportData{})
	if err != nil {
		t.Fatal(err)
	}
	if c, err = v.Verify(context.Background(), quote, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if events, err = rtmr.Parse(log); err != nil || rtmr.Check(events, c.RTMRs[3]) == nil {
		t.Errorf("a log without the last extension replays (%v)", err)
	}
}
