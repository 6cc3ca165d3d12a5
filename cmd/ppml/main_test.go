package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/ppml/ppml/internal/pgtest"
	"github.com/ppml/ppml/internal/testfiles"
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
	// The scripts' PostgreSQL server, started by the first pgdb.
	var pg struct {
		once sync.Once
		s    *pgtest.Server
		err  error
	}
	t.Cleanup(func() {
		if pg.s != nil {
			pg.s.Close()
		}
	})
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			// tdxset NAME DIR writes the collateral folder of a TDX set of
			// testdata/attestation/README.md (TDX-1 ... TDX-11) at DIR.
			"tdxset": func(ts *testscript.TestScript, neg bool, args []string) {
				if neg || len(args) != 2 {
					ts.Fatalf("usage: tdxset NAME DIR")
				}
				for _, s := range testfiles.TDXSets() {
					if s.Name == args[0] {
						s.CollateralDir(t, ts.MkAbs(args[1]))
						return
					}
				}
				ts.Fatalf("no TDX set %s", args[0])
			},
			// pgdb VAR makes a new PostgreSQL database and sets $VAR to its URL.
			"pgdb": func(ts *testscript.TestScript, neg bool, args []string) {
				if neg || len(args) != 1 {
					ts.Fatalf("usage: pgdb VAR")
				}
				pg.once.Do(func() { pg.s, pg.err = pgtest.New() })
				ts.Check(pg.err)
				url, err := pg.s.CreateDatabase()
				ts.Check(err)
				ts.Setenv(args[0], url)
			},
			// sql STORE STATEMENT runs a statement on a store's database directly, as someone
			// with access to it could: STORE is sqlite:PATH or a PostgreSQL URL.
			"sql": func(ts *testscript.TestScript, neg bool, args []string) {
				if neg || len(args) != 2 {
					ts.Fatalf("usage: sql STORE STATEMENT")
				}
				driver, dsn := "pgx", args[0]
				if path, ok := strings.CutPrefix(dsn, "sqlite:"); ok {
					driver, dsn = "sqlite", ts.MkAbs(path)
				}
				db, err := sql.Open(driver, dsn)
				ts.Check(err)
				defer db.Close()
				res, err := db.Exec(args[1])
				ts.Check(err)
				n, err := res.RowsAffected()
				ts.Check(err)
				if n == 0 {
					ts.Fatalf("%s: no row changed", args[1])
				}
			},
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
			// pccs DIR serves the collateral folder DIR as a PCCS does, at $PCCS, until the
			// script ends, and appends each request's URI to pccs.log.
			"pccs": func(ts *testscript.TestScript, neg bool, args []string) {
				if neg || len(args) != 1 {
					ts.Fatalf("usage: pccs DIR")
				}
				s := httptest.NewServer(testfiles.PCCS(ts.MkAbs(args[0]), ts.MkAbs("pccs.log")))
				ts.Defer(s.Close)
				ts.Setenv("PCCS", s.URL)
			},
		},
		// [cvm]: this machine is a confidential VM, with configfs-tsm reports or /dev/sev-guest.
		// [root]: the tests run as root. [postgres]: PostgreSQL is installed (pgdb works).
		Condition: func(cond string) (bool, error) {
			if cond == "root" {
				return os.Geteuid() == 0, nil
			}
			if cond == "postgres" {
				return pgtest.Installed(), nil
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
			// ppml run's order files (docs/run.md, "Checking ahead"), out of the scripts' folder.
			cache, err := os.MkdirTemp("", "ppml-cache-")
			if err != nil {
				return err
			}
			env.Defer(func() { os.RemoveAll(cache) })
			env.Setenv("XDG_CACHE_HOME", cache)
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
