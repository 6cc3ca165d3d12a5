package main

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ppml/ppml/internal/atomicfile"
	"github.com/ppml/ppml/pf"
)

// TestRekeyKilled kills ppml pf rekey (the real command, another process) with SIGKILL at random
// moments over a folder of many files, round after round, each round moving the folder to the
// other key: after every kill each file reads, under the old key or the new one, as its
// plaintext under its bound path, and the command run again finishes the round.
func TestRekeyKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("kills ppml pf rekey at random moments, many times over")
	}
	ppml, err := exec.LookPath("ppml") // the test binary as ppml (TestMain)
	if err != nil {
		t.Fatal(err)
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	dir := t.TempDir()
	keys := [2]pf.Key{{1}, {2}}
	keyFiles := [2]string{filepath.Join(dir, "k0"), filepath.Join(dir, "k1")}
	for i, k := range keys {
		os.WriteFile(keyFiles[i], k[:], 0o600)
	}
	enc := filepath.Join(dir, "enc")
	plain := map[string][]byte{}
	for i := range 80 {
		size := rng.IntN(200 << 10)
		if i%20 == 0 {
			size = 2<<20 + rng.IntN(2<<20) // rekeyed alone, on every core: killed midway more often
		}
		name := filepath.Join(enc, fmt.Sprintf("d%d", i%7), fmt.Sprintf("f%d", i))
		b := make([]byte, size)
		for j := range b {
			b[j] = byte(i + j/4096)
		}
		plain[name] = b
		os.MkdirAll(filepath.Dir(name), 0o755)
		f, err := os.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pf.Encrypt(f, bytes.NewReader(b), keys[0], boundPath(dir, name), &pf.Options{Version: uint8(1 + i%2)}); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}

	rekey := func(from int) *exec.Cmd {
		cmd := exec.Command(ppml, "pf", "rekey", "-w", keyFiles[from], "-W", keyFiles[1-from], "-i", "enc")
		cmd.Dir = dir
		return cmd
	}
	// How long a whole round takes (the shorter of two), to kill within it.
	round := time.Hour
	for from := range 2 {
		start := time.Now()
		if out, err := rekey(from).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v", out, err)
		}
		round = min(round, time.Since(start))
	}
	kills, interrupts, mixed, midFile, rounds := 0, 0, 0, 0, 0
	for r := 0; r < 4 || kills < 20; r++ {
		rounds++
		from := r % 2
		for finished := false; !finished; {
			cmd := rekey(from)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Duration(rng.Int64N(int64(round / 2))))
			// One time in four, Ctrl-C: the files in progress finish, and ppml says what is left.
			interrupt := rng.IntN(4) == 0
			if interrupt {
				cmd.Process.Signal(syscall.SIGINT)
			} else {
				cmd.Process.Signal(syscall.SIGKILL)
			}
			err := cmd.Wait()
			var exit *exec.ExitError
			switch {
			case err == nil:
				finished = true
			case errors.As(err, &exit) && exit.Sys().(syscall.WaitStatus).Signaled():
				kills++ // before ppml caught SIGINT, it ends the process as SIGKILL does
			case interrupt && errors.As(err, &exit) && exit.ExitCode() == 1:
				if !regexp.MustCompile(`(?m)^ppml: interrupted: .* \(\d+ files rekeyed, \d+ left under the old key: run again to finish\)\n\z`).Match(stderr.Bytes()) {
					t.Fatalf("round %d, interrupted: %s", r, stderr.String())
				}
				interrupts++
			default:
				t.Fatalf("round %d: %v: %s", r, err, stderr.String())
			}
			under, temps := checkRekeyed(t, dir, plain, keys)
			if interrupt && temps > 0 && !finished && exit.ExitCode() == 1 {
				t.Fatalf("round %d: an interrupted run left %d temporary files", r, temps)
			}
			if finished && under[1-from] != len(plain) {
				t.Fatalf("round %d finished with %d files under the new key of %d", r, under[1-from], len(plain))
			}
			if under[0] > 0 && under[1] > 0 {
				mixed++
			}
			if temps > 0 {
				midFile++
				if finished {
					t.Fatalf("round %d finished with %d temporary files left", r, temps)
				}
			}
			if kills > 1000 {
				t.Fatal("no round finishes")
			}
		}
	}
	t.Logf("%d kills and %d interrupts over %d rounds (a round takes %v): %d left files under both keys, %d a temporary file", kills, interrupts, rounds, round, mixed, midFile)
	if mixed == 0 {
		t.Fatal("no kill landed in the middle of a round: the test proves nothing")
	}
}

// boundPath is the path bound into the file name under dir: relative to dir, where rekey runs.
func boundPath(dir, name string) string {
	rel, _ := filepath.Rel(dir, name)
	return filepath.ToSlash(rel)
}

// checkRekeyed checks that every file of plain reads as its plaintext under one of keys, bound to
// its path, and counts the files under each key and the temporary files.
func checkRekeyed(t *testing.T, dir string, plain map[string][]byte, keys [2]pf.Key) (under [2]int, temps int) {
	t.Helper()
	for name, want := range plain {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		ok := false
		for i, k := range keys {
			var got bytes.Buffer
			_, err := pf.Decrypt(&got, bytes.NewReader(b), int64(len(b)), k, &pf.Options{CheckPath: true, Path: boundPath(dir, name)})
			if err == nil && bytes.Equal(got.Bytes(), want) {
				under[i]++
				ok = true
				break
			}
			if !errors.Is(err, pf.ErrKey) {
				t.Fatalf("%s under key %d: %v", name, i, err)
			}
		}
		if !ok {
			t.Fatalf("%s opens with neither key", name)
		}
	}
	filepath.WalkDir(dir, func(name string, d os.DirEntry, err error) error {
		if err == nil && atomicfile.IsTemp(d.Name()) && strings.HasPrefix(name, filepath.Join(dir, "enc")) {
			temps++
		}
		return err
	})
	return under, temps
}
