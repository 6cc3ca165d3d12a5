package sandbox_test

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestLauncherLinksNoServer: what `ppml run` links to launch a workload holds neither the
// provisioning server's store (SQLite), its metrics (Prometheus), nor the simulated platform,
// which the command line injects as an Attester.
func TestLauncherLinksNoServer(t *testing.T) {
	out, err := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{"modernc.org/sqlite", "github.com/prometheus/", "github.com/ppml/ppml/attest/sim", "github.com/ppml/ppml/store", "github.com/ppml/ppml/provision"} {
			if dep == banned || strings.HasPrefix(dep, banned) && strings.HasSuffix(banned, "/") {
				t.Errorf("the sandbox links %s", dep)
			}
		}
	}
}
