package provision

import (
	"strings"
	"testing"

	"github.com/ppml/ppml/attest"
	"github.com/ppml/ppml/attest/rtmr"
)

// rtmr3_manifest admits a TD whose RTMR3 log names the report data's manifest and, where the
// workload lists manifests, no other; without it the log is not looked at.
func TestAdmitRTMR3(t *testing.T) {
	mrtd := strings.Repeat("33", 48)
	a, b := [32]byte{0xaa}, [32]byte{0xbb}
	reportData := func(m [32]byte) attest.Hex { return append(make(attest.Hex, 32), m[:]...) }
	hexOf := func(m [32]byte) string { return attest.Hex(m[:]).String() }
	claims := func(m [32]byte) *attest.Claims {
		return &attest.Claims{TEE: attest.TDX, Platform: "intel", MRTD: unhex(mrtd), TCBStatus: "UpToDate",
			TD: &attest.TD{Attributes: attest.TDAttributes{SEPTVEDisable: true}}, ReportData: reportData(m)}
	}
	logOf := func(events ...rtmr.Event) *RTMR3Log { return &RTMR3Log{Events: events} }
	coco := rtmr.NewEvent("aael", "github.com/confidential-containers PullImage {}")
	required := Workload{Name: "td", TEE: "tdx", MRTD: []string{mrtd}, RTMR3Manifest: true, Keys: []string{"k"}}
	listed := required
	listed.Manifest = []string{hexOf(a)}
	plain := listed
	plain.RTMR3Manifest = false
	for _, w := range []*Workload{&required, &listed, &plain} {
		if err := w.check(""); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name   string
		w      Workload
		claims *attest.Claims
		log    *RTMR3Log
		want   string // "" admits
	}{
		{"named", required, claims(a), logOf(coco, rtmr.ManifestEvent(a)), ""},
		{"named among others", required, claims(a), logOf(rtmr.ManifestEvent(b), rtmr.ManifestEvent(a)), ""},
		{"no log", required, claims(a), nil, "the evidence carries no RTMR3 event log (rtmr3_manifest = true)"},
		{"empty log", required, claims(a), logOf(), "RTMR3's event log of 0 events does not name manifest " + hexOf(a)},
		{"another manifest", required, claims(a), logOf(coco, rtmr.ManifestEvent(b)), "does not name manifest " + hexOf(a)},
		{"no manifest in the report data", required, claims([32]byte{}), logOf(rtmr.ManifestEvent(a)), "the report data names no manifest"},
		{"listed", listed, claims(a), logOf(rtmr.ManifestEvent(a), rtmr.ManifestEvent(a)), ""},
		{"another started before", listed, claims(a), logOf(rtmr.ManifestEvent(b), rtmr.ManifestEvent(a)), "RTMR3 names manifest " + hexOf(b) + ", which is not one allowed: the TD started another workload"},
		{"not required", plain, claims(a), nil, ""},
		{"not required, other log", plain, claims(a), logOf(rtmr.ManifestEvent(b)), ""},
	} {
		w, _, err := Policy{tc.w}.AdmitWithGPUs(tc.claims, nil, tc.log)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want == "" && w == nil:
			t.Errorf("%s: no workload", tc.name)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		}
	}
	_, err := LoadConfig(writeConfig(t, "[[workload]]\nname = \"w\"\nkeys = [\"k\"]\ntee = \"snp\"\nmeasurement = [\""+mrtd+"\"]\nmin_tcb = {}\nrtmr3_manifest = true\n"))
	if err == nil || !strings.Contains(err.Error(), `rtmr3_manifest is for tee = "tdx"`) {
		t.Errorf("rtmr3_manifest for snp: %v", err)
	}
}

// An audit record names the log's events, the first few of many.
func TestRTMR3LogString(t *testing.T) {
	l := &RTMR3Log{Events: []rtmr.Event{rtmr.ManifestEvent([32]byte{1})}}
	if got := l.String(); got != "RTMR3 event log replayed: 1 events; aael ppml manifest 01"+strings.Repeat("0", 62) {
		t.Errorf("%q", got)
	}
	for range 30 {
		l.Events = append(l.Events, rtmr.NewEvent("aael", "x y z"))
	}
	if got := l.String(); !strings.HasSuffix(got, "; aael x y z; and 15 more") || !strings.HasPrefix(got, "RTMR3 event log replayed: 31 events;") {
		t.Errorf("%q", got)
	}
}
