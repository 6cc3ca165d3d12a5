package sandbox

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// TestInterpreterOf reads the loader of a real program, the interpreter of scripts, and nothing
// of anything else.
func TestInterpreterOf(t *testing.T) {
	lib, err := os.ReadFile("/lib/x86_64-linux-gnu/libm.so.6") // a library: no PT_INTERP
	if err != nil {
		t.Skip("needs /lib/x86_64-linux-gnu/libm.so.6")
	}
	python, err := os.ReadFile("/usr/bin/python3")
	if err != nil {
		t.Skip("needs /usr/bin/python3")
	}
	for _, tc := range []struct {
		name   string
		file   []byte
		interp string
		script bool
	}{
		{"python3", python, "/lib64/ld-linux-x86-64.so.2", false},
		{"library", lib, "", false},
		{"script", []byte("#!/usr/bin/env python3\nprint(1)\n"), "/usr/bin/env", true},
		{"script without a newline", []byte("#! /bin/sh"), "/bin/sh", true},
		{"relative interpreter", []byte("#!sh\n"), "", false},
		{"empty #!", []byte("#!\n"), "", false},
		{"text", []byte("hello"), "", false},
		{"empty", nil, "", false},
		{"truncated ELF", python[:100], "", false},
	} {
		interp, script := interpreterOf(bytes.NewReader(tc.file))
		if interp != tc.interp || script != tc.script {
			t.Errorf("%s: %q, %v; want %q, %v", tc.name, interp, script, tc.interp, tc.script)
		}
	}
}

// FuzzInterpreterOf: any bytes give an absolute clean path or nothing, without a panic.
func FuzzInterpreterOf(f *testing.F) {
	if python, err := os.ReadFile("/usr/bin/python3"); err == nil {
		f.Add(python[:min(len(python), 4096)])
	}
	f.Add([]byte("#!/bin/sh -e\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		interp, _ := interpreterOf(bytes.NewReader(b))
		if interp != "" && (!strings.HasPrefix(interp, "/") || strings.ContainsRune(interp, 0)) {
			t.Errorf("interpreter %q", interp)
		}
	})
}
