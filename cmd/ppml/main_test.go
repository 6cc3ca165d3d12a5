package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
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
			// waitfor HOST:PORT waits until something listens there, and ! waitfor HOST:PORT
			// until nothing does any more, for up to 20 seconds.
			"waitfor": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) != 1 {
					ts.Fatalf("usage: [!] waitfor HOST:PORT")
				}
				for range 200 {
					c, err := net.Dial("tcp", args[0])
					if err == nil {
						c.Close()
					}
					if (err == nil) != neg {
						return
					}
					time.Sleep(100 * time.Millisecond)
				}
				if neg {
					ts.Fatalf("something still listens on %s", args[0])
				}
				ts.Fatalf("nothing listens on %s", args[0])
			},
			// hold HOST:PORT connects there with TLS, presenting a throwaway certificate, and once
			// the handshake is done (and so the connection taken) sends nothing until the script
			// ends.
			"hold": func(ts *testscript.TestScript, neg bool, args []string) {
				if neg || len(args) != 1 {
					ts.Fatalf("usage: hold HOST:PORT")
				}
				c, err := tls.Dial("tcp", args[0], &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{throwawayCertificate(ts)}})
				ts.Check(err)
				ts.Defer(func() { c.Close() })
			},
			// httpget URL prints the status code of a GET of URL and the body, on a line of their
			// own.
			"httpget": func(ts *testscript.TestScript, neg bool, args []string) {
				if neg || len(args) != 1 {
					ts.Fatalf("usage: httpget URL")
				}
				resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(args[0])
				ts.Check(err)
				defer resp.Body.Close()
				body, err := io.ReadAll(resp.Body)
				ts.Check(err)
				fmt.Fprintf(ts.Stdout(), "%d %s", resp.StatusCode, body)
			},
			// garbage HOST:PORT N opens N connections there that send bytes that are not TLS,
			// each until the server closes it.
			"garbage": func(ts *testscript.TestScript, neg bool, args []string) {
				if neg || len(args) != 2 {
					ts.Fatalf("usage: garbage HOST:PORT N")
				}
				n, err := strconv.Atoi(args[1])
				ts.Check(err)
				for range n {
					c, err := net.Dial("tcp", args[0])
					ts.Check(err)
					c.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
					c.SetReadDeadline(time.Now().Add(10 * time.Second))
					io.Copy(io.Discard, c)
					c.Close()
				}
			},
		},
		// [cvm]: this machine is a confidential VM, with configfs-tsm reports or /dev/sev-guest.
		// [root]: the tests run as root.
		Condition: func(cond string) (bool, error) {
			if cond == "root" {
				return os.Geteuid() == 0, nil
			}
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

// throwawayCertificate makes a self-signed certificate.
func throwawayCertificate(ts *testscript.TestScript) tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ts.Check(err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	ts.Check(err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
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
		{[]string{"pf"}, exitOK},
	} {
		var out, errOut bytes.Buffer
		if got := run(tc.args, nil, &out, &errOut); got != tc.want {
			t.Errorf("ppml %v: exit status %d, want %d (stderr %q)", tc.args, got, tc.want, errOut.String())
		}
	}
}

// TestUnknownCommand: a mistyped command fails as a usage error at every level, says which and
// suggests the near ones, and prints nothing on standard output for a script to take.
func TestUnknownCommand(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"foo"}, `ppml: unknown command "foo" (see ppml --help)`},
		{[]string{"pf", "encrpyt", "-w", "k"}, `ppml pf: unknown command "encrpyt"; did you mean encrypt? (see ppml pf --help)`},
		{[]string{"quote", "foo"}, `ppml quote: unknown command "foo" (see ppml quote --help)`},
		{[]string{"key", "lst"}, `ppml key: unknown command "lst"; did you mean list? (see ppml key --help)`},
	} {
		var out, errOut bytes.Buffer
		if got := run(tc.args, nil, &out, &errOut); got != exitUsage || strings.TrimSpace(errOut.String()) != tc.want || out.Len() > 0 {
			t.Errorf("ppml %v: exit status %d, stdout %q, stderr %q; want %d and %q", tc.args, got, out.String(), errOut.String(), exitUsage, tc.want)
		}
	}
}

// TestVersion: ppml version and ppml --version say the same, with the Go toolchain.
func TestVersion(t *testing.T) {
	var outs []string
	for _, args := range [][]string{{"version"}, {"--version"}} {
		var out, errOut bytes.Buffer
		if got := run(args, nil, &out, &errOut); got != exitOK {
			t.Fatalf("ppml %v: exit status %d, stderr %q", args, got, errOut.String())
		}
		outs = append(outs, out.String())
	}
	if outs[0] != outs[1] || !strings.HasPrefix(outs[0], "ppml ") || !strings.HasSuffix(outs[0], ", "+runtime.Version()+"\n") {
		t.Errorf("version %q, --version %q", outs[0], outs[1])
	}
}
