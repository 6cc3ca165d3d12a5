package manifest

import (
	"bytes"
	"strings"
	"testing"
)

func TestGPUsKey(t *testing.T) {
	const base = "libos.entrypoint = \"/bin/true\"\n"
	for _, tc := range []struct {
		line string
		want int
		err  string
	}{
		{"", 0, ""},
		{`ppml.gpus = "all"`, AllGPUs, ""},
		{`ppml.gpus = 2`, 2, ""},
		{`ppml.gpus = 0`, 0, ""},
		{`ppml.gpus = -1`, 0, `ppml.gpus = -1: write "all"`},
		{`ppml.gpus = "some"`, 0, `ppml.gpus = some: write "all"`},
		{`ppml.gpus = true`, 0, `ppml.gpus = true`},
		{`ppml.gpu = 1`, 0, "unknown manifest key ppml.gpu"},
	} {
		m, err := Parse([]byte(base + tc.line + "\n"))
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: %v, want %q", tc.line, err, tc.err)
		case tc.err == "" && err != nil:
			t.Errorf("%q: %v", tc.line, err)
		case tc.err == "" && m.GPUs != tc.want:
			t.Errorf("%q: %d GPUs, want %d", tc.line, m.GPUs, tc.want)
		}
	}
	// The key is part of the workload's measurement.
	a, _ := Parse([]byte(base))
	b, _ := Parse([]byte(base + "ppml.gpus = 1\n"))
	if bytes.Equal(a.Canonical(), b.Canonical()) {
		t.Error("ppml.gpus does not change the measurement")
	}
}
