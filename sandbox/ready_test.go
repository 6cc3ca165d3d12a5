package sandbox_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/ppml/ppml/manifest"
	"github.com/ppml/ppml/sandbox"
	"github.com/ppml/ppml/store"
)

// readyGPUs records when it is set ready, by what had happened then.
type readyGPUs struct {
	w     *world
	err   error    // what SetReady returns
	calls []string // at each call: the server's last decision, and whether the workload had run
}

func (g *readyGPUs) SetReady() error {
	decision := "no decision yet"
	if g.w.store != nil {
		for rec, err := range g.w.store.AuditRecords(context.Background(), store.AuditFilter{Limit: 1, Tail: true}) {
			if err == nil {
				decision = string(rec.Decision)
			}
		}
	}
	ran := "workload not run"
	if _, err := os.Stat("result.txt"); err == nil {
		ran = "workload ran"
	}
	g.calls = append(g.calls, decision+", "+ran)
	return g.err
}

// TestGPUsReadyAfterRelease checks that the GPUs are set ready once the server released the keys
// and before the workload starts; never when it refuses; and that the workload does not start
// when they cannot be.
func TestGPUsReadyAfterRelease(t *testing.T) {
	slow(t)
	for _, tc := range []struct {
		name    string
		admit   bool
		err     error
		calls   string
		wantErr string
	}{
		{name: "released", admit: true, calls: "allow, workload not run"},
		{name: "refused", admit: false, calls: "", wantErr: "the server refused"},
		{name: "not ready", admit: true, err: errors.New("nvmlSystemSetConfComputeGpusReadyState: Unknown Error (NVML error 999)"), calls: "allow, workload not run",
			wantErr: "set the GPUs ready for work, once their evidence and the keys were accepted: nvmlSystemSetConfComputeGpusReadyState: Unknown Error (NVML error 999)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorkWorld(t, newCanary())
			m := w.manifest(workArgv, workMounts, provisioning(w.addr), "")
			if tc.admit {
				w.serve(manifest.Measure(m), nil)
			} else {
				w.serve([32]byte{1}, nil)
			}
			g := &readyGPUs{w: w, err: tc.err}
			var out bytes.Buffer
			opts := w.options(m, &out)
			opts.ConfidentialGPUs = g
			res, err := sandbox.Run(context.Background(), m, opts)
			if got := strings.Join(g.calls, "; "); got != tc.calls {
				t.Errorf("set ready: %q, want %q", got, tc.calls)
			}
			if tc.wantErr == "" {
				if err != nil || res.ExitCode != 0 || out.String() != "done 3\n" {
					t.Fatalf("Run: %v, %v, output %q", res, err, out.String())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Run: %v, want an error with %q", err, tc.wantErr)
			}
			if _, err := os.Stat("result.txt"); out.Len() > 0 || err == nil {
				t.Errorf("the workload ran: %q", out.String())
			}
		})
	}
}

// TestGPUsNotReadyWithoutKeys checks that a workload without encrypted mounts, which attests
// for nothing, does not set the GPUs ready.
func TestGPUsNotReadyWithoutKeys(t *testing.T) {
	slow(t)
	w := newWorld(t, map[string]string{"hello.py": `print("hello")`})
	m := w.manifest(`loader.argv = ["python3", "/app/hello.py"]`, "", "", "")
	g := &readyGPUs{w: w}
	var out bytes.Buffer
	opts := w.options(m, &out)
	opts.ConfidentialGPUs = g
	if res, err := sandbox.Run(context.Background(), m, opts); err != nil || res.ExitCode != 0 || out.String() != "hello\n" {
		t.Fatalf("Run: %v, %v, output %q", res, err, out.String())
	}
	if len(g.calls) != 0 {
		t.Errorf("set ready without keys: %v", g.calls)
	}
}
