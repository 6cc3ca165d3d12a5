package sandbox_test

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"testing"
	"time"

	"github.com/ppml/ppml/manifest"
	"github.com/ppml/ppml/sandbox"
	"github.com/ppml/ppml/trustfs"
)

// benchManifest runs /bin/true with two encrypted mounts under two keys, and trusts, besides
// what /bin/true needs, Python's standard library: an installation of some size to check.
const benchManifest = `libos.entrypoint = "/bin/true"
loader.env.SECRET_PROVISION_SERVERS = %q
loader.env.SECRET_PROVISION_CA_CHAIN_PATH = "/app/ca.crt"
fs.mounts = [
  { path = "/bin/true", uri = "file:/bin/true" },
  { path = "/lib64", uri = "file:/lib64" },
  { path = "/lib/x86_64-linux-gnu", uri = "file:/lib/x86_64-linux-gnu" },
  { path = "/usr/lib/python3.11", uri = "file:/usr/lib/python3.11" },
  { path = "/app", uri = "file:app" },
  { path = "/input.txt", uri = "file:input.txt", type = "encrypted" },
  { path = "/data", uri = "file:enc/data", type = "encrypted", key_name = "model" },
  { path = "/tmp", type = "tmpfs" },
]
sgx.trusted_files = ["file:app/", "file:/bin/true", "file:/lib64/ld-linux-x86-64.so.2",
  "file:/lib/x86_64-linux-gnu/libc.so.6", "file:/usr/lib/python3.11/"]
`

// BenchmarkStartup measures ppml run's start-up (attestation, key fetch, mounts) for a trivial
// workload, /bin/true, against starting it natively, with the check of the trusted files it
// opens reported beside it. Metrics are averages per run, in milliseconds: startup-ms is
// Timing.Startup (the target is under 300), trusted-ms the trusted-file checks of trusted-MB
// megabytes.
func BenchmarkStartup(b *testing.B) {
	needRoot(b)
	w := newWorld(b, nil)
	w.encrypt("input.txt", w.keys["default"], []byte("input"))
	w.encrypt("enc/data/model.bin", w.keys["model"], make([]byte, 1<<20))
	m, err := manifest.Parse(fmt.Appendf(nil, benchManifest, w.addr))
	if err != nil {
		b.Fatal(err)
	}
	if m, err = m.HashTrustedFiles(""); err != nil {
		b.Fatal(err)
	}
	w.serve(manifest.Measure(m), nil)

	b.Run("native", func(b *testing.B) {
		for b.Loop() {
			if err := exec.Command("/bin/true").Run(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ppml", func(b *testing.B) {
		var sum sandbox.Timing
		var checked trustfs.Stats
		var out bytes.Buffer
		for b.Loop() {
			res, err := sandbox.Run(context.Background(), m, w.options(m, &out))
			if err != nil || res.ExitCode != 0 {
				b.Fatalf("%v, %v: %s", res, err, out.String())
			}
			sum.Startup += res.Startup
			sum.Keys += res.Keys
			sum.Sandbox += res.Sandbox
			checked.Time += res.Checked.Time
			checked.Bytes = res.Checked.Bytes
		}
		ms := func(d time.Duration) float64 { return float64(d) / float64(b.N) / 1e6 }
		b.ReportMetric(ms(sum.Startup), "startup-ms")
		b.ReportMetric(ms(sum.Keys), "keys-ms")
		b.ReportMetric(ms(sum.Sandbox), "sandbox-ms")
		b.ReportMetric(ms(checked.Time), "trusted-ms")
		b.ReportMetric(float64(checked.Bytes)/1e6, "trusted-MB")
	})
}
