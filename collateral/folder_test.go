package collateral

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFetchDir fetches two SGX platforms into one folder: the fake PCS answers the TCB info of
// each FMSPC with its own recorded body, and the folder reads back, for each FMSPC, as that
// platform's bundle.
func TestFetchDir(t *testing.T) {
	fx := sgxFixture(t)
	other := Platform{SGX, "00606A000000", ProcessorCA}
	otherTCB := read(t, "oasis-core/tcb_info_v3_fmspc_00606A000000.json")
	s := newFakePCS(t, fx)
	s.handle("/sgx/certification/v4/tcb", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("TCB-Info-Issuer-Chain", encodeURIComponent(fx.want.TCBInfoIssuerChain))
		if r.URL.Query().Get("fmspc") == other.FMSPC {
			w.Write(otherTCB)
		} else {
			w.Write(fx.want.TCBInfo)
		}
		if got := r.URL.Query().Get("update"); got != "standard" {
			t.Errorf("update=%q, want standard", got)
		}
	})
	dir := t.TempDir()
	f := &Fetcher{BaseURL: s.URL, Update: "standard"}
	if err := f.FetchDir(context.Background(), dir, fx.p, other, fx.p); err != nil {
		t.Fatal(err)
	}
	for fmspc, want := range map[string][]byte{fx.p.FMSPC: fx.want.TCBInfo, other.FMSPC: otherTCB} {
		b, err := ReadDir(dir, fmspc)
		if err != nil {
			t.Fatal(err)
		}
		if string(b.TCBInfo) != string(want) || !equal(&Bundle{TCBInfo: want, TCBInfoIssuerChain: b.TCBInfoIssuerChain,
			QEIdentity: fx.want.QEIdentity, QEIdentityIssuerChain: fx.want.QEIdentityIssuerChain, PCKCRL: fx.want.PCKCRL,
			PCKCRLIssuerChain: fx.want.PCKCRLIssuerChain, RootCACRL: fx.want.RootCACRL}, b) {
			t.Errorf("FMSPC %s: the folder does not hold its bundle", fmspc)
		}
	}
	pieces, err := Inspect(dir)
	if err != nil {
		t.Fatal(err)
	}
	var fmspcs []string
	for _, p := range pieces {
		if p.What == "TCB info" {
			fmspcs = append(fmspcs, p.File+" "+p.FMSPC)
		}
	}
	if got := strings.Join(fmspcs, ", "); got != "tcb-info-00606a000000.json 00606A000000, tcb-info-00906ed50000.json 00906ED50000, tcb-info.json 00906ED50000" {
		t.Errorf("TCB infos %s", got)
	}

	// Platforms of different PCK CAs, or a failed fetch: nothing is written.
	empty := t.TempDir()
	if err := f.FetchDir(context.Background(), empty, fx.p, Platform{SGX, other.FMSPC, PlatformCA}); err == nil || !strings.Contains(err.Error(), "need folders of their own") {
		t.Errorf("two CAs: %v", err)
	}
	if err := (&Fetcher{BaseURL: s.URL, Update: "late"}).FetchDir(context.Background(), empty, fx.p); err == nil || !strings.Contains(err.Error(), `update "late" is not early or standard`) {
		t.Errorf("update late: %v", err)
	}
	if entries, _ := os.ReadDir(empty); len(entries) > 0 {
		t.Errorf("a failed fetch wrote %v", entries)
	}
	if _, err := Inspect(filepath.Join(empty, "none")); err == nil {
		t.Error("inspected a missing folder")
	}
}
