package harden

import (
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// TestProcess runs Process in a child process (it cannot be undone) and checks there that the
// process is not dumpable, may not dump core, and has its memory locked.
func TestProcess(t *testing.T) {
	if os.Getenv("HARDEN_CHILD") == "1" {
		if err := Process(); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 8<<20)
		for i := range buf {
			buf[i] = byte(i) // fault the pages in: MCL_ONFAULT locks them then
		}
		if d, err := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0); err != nil || d != 0 {
			t.Errorf("dumpable %d, %v", d, err)
		}
		var core unix.Rlimit
		if err := unix.Getrlimit(unix.RLIMIT_CORE, &core); err != nil || core.Cur != 0 || core.Max != 0 {
			t.Errorf("RLIMIT_CORE %+v, %v", core, err)
		}
		status, err := os.ReadFile("/proc/self/status")
		if err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(`VmLck:\s+(\d+) kB`).FindSubmatch(status)
		if m == nil {
			t.Fatalf("no VmLck in /proc/self/status")
		}
		if kb, _ := strconv.Atoi(string(m[1])); kb < 8<<10 {
			t.Errorf("VmLck %d kB, want at least the 8 MiB just touched", kb)
		}
		_ = buf[len(buf)-1]
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("locking memory needs root")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestProcess$", "-test.v")
	cmd.Env = append(os.Environ(), "HARDEN_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
}
