package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestProgressWithoutTerminal: tests, scripts and pipes get no progress bar, whatever the size.
func TestProgressWithoutTerminal(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, w := range []io.Writer{&bytes.Buffer{}, f} {
		bar, finish := newProgress(w, 1<<40, "encrypting x")
		if bar != io.Discard {
			t.Errorf("%T: a progress bar without a terminal", w)
		}
		finish()
	}
	if info, _ := f.Stat(); info.Size() != 0 {
		t.Errorf("%d bytes written to a file", info.Size())
	}
}

// TestProgressFirstRate: the bar's first rate divides the bytes by the time since the bar was
// shown, not by the microseconds since the first bytes came, which made it read hundreds of GB/s.
func TestProgressFirstRate(t *testing.T) {
	var out bytes.Buffer
	bar, finish := showProgress(&out, 100<<20, "encrypting x")
	defer finish()
	bar.Write(make([]byte, 1<<20))
	time.Sleep(150 * time.Millisecond)
	bar.Write(make([]byte, 1<<20))
	rates := regexp.MustCompile(`\(([0-9.]+) ([kMGT]?B)/s\)`).FindAllStringSubmatch(out.String(), -1)
	if len(rates) == 0 {
		t.Fatalf("no rate shown: %q", out.String())
	}
	// 2 MiB in 150 ms or more: 14 MB/s at most.
	v, _ := strconv.ParseFloat(rates[0][1], 64)
	if scale := map[string]float64{"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}[rates[0][2]]; v*scale > 14e6 {
		t.Errorf("first rate %s %s/s, want 14 MB/s at most (output %q)", rates[0][1], rates[0][2], out.String())
	}
}

// TestProgressCleared: finishing erases the bar, and so does clearProgress, before the message
// that ends ppml on a signal: the message starts its own line, and the bar does not come back.
func TestProgressCleared(t *testing.T) {
	for _, name := range []string{"finish", "clearProgress"} {
		var out bytes.Buffer
		bar, finish := showProgress(&out, 100<<20, "encrypting x")
		time.Sleep(110 * time.Millisecond)
		bar.Write(make([]byte, 10<<20))
		if name == "finish" {
			finish()
		} else {
			clearProgress()
		}
		erased := regexp.MustCompile(`\r {20,}\r$`)
		if !strings.Contains(out.String(), "encrypting x") || !erased.MatchString(out.String()) {
			t.Errorf("%s: the bar is not erased at the end of %q", name, out.String())
		}
		n := out.Len()
		time.Sleep(110 * time.Millisecond)
		bar.Write(make([]byte, 10<<20))
		if out.Len() != n {
			t.Errorf("%s: the bar came back: %q", name, out.String()[n:])
		}
		finish()
	}
}
