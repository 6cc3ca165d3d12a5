// Package pgtest is for tests and benchmarks only: it runs a real PostgreSQL server of its own, from the
// binaries of Debian's postgresql package, in a temporary folder, and makes databases in it.
//
// The server runs as the postgres user when the test runs as root (PostgreSQL refuses to run as
// root), listens on a free loopback port and on a unix socket in its folder, trusts local
// connections, and is stopped, its folder removed, when the test or the package's tests end.
// Where the binaries are absent the tests that need them are skipped, saying so.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Server is a PostgreSQL server that a test started.
type Server struct {
	dir  string // holds data/ and the socket
	port int
	cred *syscall.Credential // whom the server runs as; nil for the current user
	cmd  *exec.Cmd
	exit chan error // the server process's end
	dbs  atomic.Int64
}

// binDir finds the folder of PostgreSQL's initdb and postgres: on PATH, or Debian's
// /usr/lib/postgresql/VERSION/bin.
func binDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		dir := filepath.Dir(p)
		if _, err := os.Stat(filepath.Join(dir, "postgres")); err == nil {
			return dir, nil
		}
	}
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(found) == 0 {
		return "", errors.New("PostgreSQL's initdb is not installed: run scripts/setup.sh (apt-get install postgresql)")
	}
	return filepath.Dir(found[len(found)-1]), nil
}

// Installed reports whether PostgreSQL's binaries are here.
func Installed() bool {
	_, err := binDir()
	return err == nil
}

// New starts a new server, which the caller stops with Close.
func New() (*Server, error) { return start() }

// Start starts a new server for t, stopped when t ends. It skips t where PostgreSQL is not
// installed.
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := start()
	if errors.Is(err, errNotInstalled) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

var errNotInstalled = errors.New("PostgreSQL is not installed")

func start() (*Server, error) {
	bin, err := binDir()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errNotInstalled, err)
	}
	// Not t.TempDir: its parents are for root only, and the server may run as postgres.
	dir, err := os.MkdirTemp("", "ppml-pgtest-")
	if err != nil {
		return nil, err
	}
	s := &Server{dir: dir}
	fail := func(err error) (*Server, error) {
		os.RemoveAll(dir)
		return nil, err
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return fail(fmt.Errorf("PostgreSQL refuses to run as root and there is no postgres user to run it as: %w", err))
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chmod(dir, 0o755); err != nil {
			return fail(err)
		}
		if err := os.Chown(dir, uid, gid); err != nil {
			return fail(err)
		}
	}
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", s.data(), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	initdb.Dir = dir
	if out, err := initdb.CombinedOutput(); err != nil {
		return fail(fmt.Errorf("initdb: %w\n%s", err, out))
	}
	if s.port, err = freePort(); err != nil {
		return fail(err)
	}
	if err := s.launch(filepath.Join(bin, "postgres")); err != nil {
		return fail(err)
	}
	return s, nil
}

func (s *Server) data() string { return filepath.Join(s.dir, "data") }

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// launch starts the server process and waits until it accepts connections.
func (s *Server) launch(postgres string) error {
	cmd := exec.Command(postgres, "-D", s.data(), "-p", strconv.Itoa(s.port), "-k", s.dir,
		"-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200", "-c", "shared_buffers=32MB")
	// If the test binary dies, the server does not outlive it (SIGQUIT: immediate shutdown).
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Pdeathsig: syscall.SIGQUIT}
	log, err := os.Create(filepath.Join(s.dir, "postgres.log"))
	if err != nil {
		return err
	}
	defer log.Close()
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	s.cmd, s.exit = cmd, make(chan error, 1)
	go func() { s.exit <- cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := pgx.Connect(context.Background(), s.URL("postgres"))
		if err == nil {
			conn.Close(context.Background())
			return nil
		}
		select {
		case err := <-s.exit:
			b, _ := os.ReadFile(filepath.Join(s.dir, "postgres.log"))
			return fmt.Errorf("postgres exited (%v):\n%s", err, b)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("postgres does not accept connections after 30s: %w", err)
		}
	}
}

// URL is the connection URL of database db, over the server's unix socket.
func (s *Server) URL(db string) string {
	q := url.Values{"host": {s.dir}, "port": {strconv.Itoa(s.port)}}
	return (&url.URL{Scheme: "postgres", User: url.User("postgres"), Path: "/" + db, RawQuery: q.Encode()}).String()
}

// Addr is the server's loopback TCP address.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// NewDatabase makes a new, empty database and returns its URL.
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	url, err := s.CreateDatabase()
	if err != nil {
		t.Fatal(err)
	}
	return url
}

// CreateDatabase makes a new, empty database and returns its URL.
func (s *Server) CreateDatabase() (string, error) {
	name := fmt.Sprintf("test_%d", s.dbs.Add(1))
	conn, err := pgx.Connect(context.Background(), s.URL("postgres"))
	if err != nil {
		return "", err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), "CREATE DATABASE "+name); err != nil {
		return "", err
	}
	return s.URL(name), nil
}

// Stop stops the server at once, as a crash would (SIGQUIT: immediate shutdown, no
// checkpoint); committed transactions survive, as after a crash.
func (s *Server) Stop() error {
	if s.cmd == nil {
		return nil
	}
	s.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-s.exit:
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		<-s.exit
	}
	s.cmd = nil
	return nil
}

// Restart starts a stopped server again, on the same port and data.
func (s *Server) Restart() error {
	bin, err := binDir()
	if err != nil {
		return err
	}
	return s.launch(filepath.Join(bin, "postgres"))
}

// Close stops the server and removes its folder.
func (s *Server) Close() {
	s.Stop()
	os.RemoveAll(s.dir)
}

var shared struct {
	once sync.Once
	s    *Server
	err  error
}

// Shared returns the package's server, started on first use and stopped by Main, or skips t
// where PostgreSQL is not installed.
func Shared(t testing.TB) *Server {
	t.Helper()
	shared.once.Do(func() { shared.s, shared.err = start() })
	if errors.Is(shared.err, errNotInstalled) {
		t.Skip(shared.err)
	}
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.s
}

// Main runs a package's tests (call it from TestMain) and then stops the shared server.
func Main(m *testing.M) int {
	code := m.Run()
	if shared.s != nil {
		shared.s.Close()
	}
	return code
}

// CPUTime is the CPU time that the server's processes have used so far: the postmaster, its
// running children (backends, writers) and those it has waited for. It reads /proc, in clock
// ticks of 10 ms.
func (s *Server) CPUTime() (time.Duration, error) {
	if s.cmd == nil {
		return 0, errors.New("the server is not running")
	}
	pid := s.cmd.Process.Pid
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		return 0, err
	}
	var ticks int64
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // the process ended
		}
		// The fields after the command's closing parenthesis: state, ppid, ...; utime, stime,
		// cutime and cstime are the 14th to 17th fields of the line.
		_, rest, ok := strings.Cut(string(b), ") ")
		f := strings.Fields(rest)
		if !ok || len(f) < 15 {
			continue
		}
		self := path == fmt.Sprintf("/proc/%d/stat", pid)
		if ppid, _ := strconv.Atoi(f[1]); ppid != pid && !self {
			continue
		}
		last := 12 // utime, stime
		if self {
			last = 14 // and cutime, cstime: the children it has waited for
		}
		for _, v := range f[11 : last+1] {
			n, _ := strconv.ParseInt(v, 10, 64)
			ticks += n
		}
	}
	return time.Duration(ticks) * 10 * time.Millisecond, nil
}
