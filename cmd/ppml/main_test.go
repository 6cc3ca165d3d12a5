package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){"ppml": main})
}

// TestScripts runs the command-line scenarios in testdata/script. $VECTORS is the folder of
// protected files made by Gramine's own tool, $ATTESTATION that of real attestation evidence.
func TestScripts(t *testing.T) {
	vectors, err := filepath.Abs("../../testdata/gramine/pf")
	if err != nil {
		t.Fatal(err)
	}
	attestation, err := filepath.Abs("../../testdata/attestation")
	if err != nil {
		t.Fatal(err)
	}
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			// waitfor HOST:PORT waits until something listens there, for up to 20 seconds.
			"waitfor": func(ts *testscript.TestScript, neg bool, args []string) {
				if neg || len(args) != 1 {
					ts.Fatalf("usage: waitfor HOST:PORT")
				}
				for range 200 {
					if c, err := net.Dial("tcp", args[0]); err == nil {
						c.Close()
						return
					}
					time.Sleep(100 * time.Millisecond)
				}
				ts.Fatalf("nothing listens on %s", args[0])
			},
		},
		// [cvm]: this machine is a confidential VM, with configfs-tsm reports or /dev/sev-guest.
		Condition: func(cond string) (bool, error) {
			if cond != "cvm" {
				return false, fmt.Errorf("unknown condition %q", cond)
			}
			for _, p := range []string{"/sys/kernel/config/tsm/report", "/dev/sev-guest"} {
				if _, err := os.Stat(p); err == nil {
					return true, nil
				}
			}
			return false, nil
		},
		Setup: func(env *testscript.Env) error {
			env.Setenv("VECTORS", vectors)
			env.Setenv("ATTESTATION", attestation)
			return nil
		},
	})
}

func TestExitStatus(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"help"}, exitOK},
		{[]string{"pf", "decrypt", "--bogus"}, exitUsage},
		{[]string{"pf", "decrypt", "-i", "x", "-o", "y"}, exitUsage},
		{[]string{"pf", "inspect"}, exitUsage},
		{[]string{"pf", "inspect", "no-such-file"}, exitFailure},
	} {
		var out, errOut bytes.Buffer
		if got := run(tc.args, nil, &out, &errOut); got != tc.want {
			t.Errorf("ppml %v: exit status %d, want %d (stderr %q)", tc.args, got, tc.want, errOut.String())
		}
	}
}
