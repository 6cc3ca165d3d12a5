package sandbox

import (
	"fmt"
	"log/slog"

	"github.com/ppml/ppml/attest"
	"github.com/ppml/ppml/attest/rtmr"
	"github.com/ppml/ppml/manifest"
)

// measureRTMR3 extends the RTMR3 of a TD whose attester a extends it (rtmr.Extender) with
// ppml's event for m, before a attests: the TD's history of what it started then names m, for
// good. Other attesters have no RTMR3 to extend.
func measureRTMR3(a attest.Attester, m *manifest.Manifest, log *slog.Logger) error {
	x, ok := rtmr.ExtenderOf(a)
	if !ok {
		return nil
	}
	e := rtmr.ManifestEvent(manifest.Measure(m))
	if err := x.ExtendRTMR3(e); err != nil {
		return fmt.Errorf("RTMR3 with the manifest's measurement: %w", err)
	}
	log.Info("RTMR3 extended", "event", e.Data)
	return nil
}
