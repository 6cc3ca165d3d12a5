// Command provision load-tests the secret provisioning server on loopback: many concurrent
// attested clients of a simulated platform fetch a key, each connection fully verified (RA-TLS
// certificate, quote, PCK chain, collateral, policy) and audited. The load generator runs in the
// same process, so the figures include it. It reports releases per second, latency percentiles
// and memory every so many requests, and at the end the CPU time a release costs both sides
// together, which a busy machine disturbs less than the throughput.
//
// By default the clients run a closed loop, each starting its next request as soon as the last
// one ends: that measures the most the server (and generator) can do, and the latency is then
// the number of clients divided by the throughput (Little's law). With -rate R the same clients
// offer R requests per second in all (request i is due at i/R seconds), as a service meets its
// load, and each latency runs from when its request was due, so that a request held up by busy
// clients counts its wait as well.
//
// With -postgres the servers keep keys and audit records in a throwaway PostgreSQL server of
// their own (initdb in a temporary folder, as internal/pgtest runs it) instead of SQLite, and
// -replicas N runs N servers over it, each client asking one first and the others after; the
// CPU time then counts PostgreSQL's processes too. -compare runs one server over SQLite, then
// the replicas over PostgreSQL, and prints the ratios.
//
//	go run ./bench/provision [-clients 64] [-requests 100000] [-rate 500] [-postgres] [-replicas 2] [-compare]
package main

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ppml/ppml/attest/sim"
	"github.com/ppml/ppml/internal/pgtest"
	"github.com/ppml/ppml/provision"
	"github.com/ppml/ppml/provision/client"
	"github.com/ppml/ppml/store"
)

// Targets from the provisioning issue.
const (
	minReleases = 500
	maxP99      = 50 * time.Millisecond
)

func main() {
	clients := flag.Int("clients", 64, "concurrent clients")
	requests := flag.Int("requests", 100000, "key releases in all")
	rate := flag.Float64("rate", 0, "requests per second to offer in all (default: closed loop, as fast as the clients go)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the run to this file")
	postgres := flag.Bool("postgres", false, "keep keys and audit records in a throwaway PostgreSQL, not SQLite")
	replicas := flag.Int("replicas", 1, "servers over the one store (with -postgres)")
	compare := flag.Bool("compare", false, "one server over SQLite, then -replicas over PostgreSQL, and their ratios")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench/provision:", err)
			os.Exit(1)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	err := func() error {
		if !*compare {
			_, err := run(*clients, *requests, *rate, *postgres, *replicas)
			return err
		}
		lite, err := run(*clients, *requests, *rate, false, 1)
		if err != nil {
			return err
		}
		fmt.Println()
		pg, err := run(*clients, *requests, *rate, true, *replicas)
		if err != nil {
			return err
		}
		fmt.Printf("\nPostgreSQL, %d replicas, against SQLite, one server: releases/s x%.2f, CPU per release x%.2f\n",
			*replicas, pg.releases/lite.releases, pg.cpu.Seconds()/lite.cpu.Seconds())
		return nil
	}()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/provision:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

// result is what one run measured: releases per second, CPU time per release.
type result struct {
	releases float64
	cpu      time.Duration
}

func run(clients, requests int, rate float64, postgres bool, replicas int) (result, error) {
	dir, err := os.MkdirTemp("", "ppml-bench-provision-")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(dir)
	dsn, storeCPU := "sqlite:ppml.db", func() (time.Duration, error) { return 0, nil }
	kind := "SQLite"
	if postgres {
		pg, err := pgtest.New()
		if err != nil {
			return result{}, err
		}
		defer pg.Close()
		if dsn, err = pg.CreateDatabase(); err != nil {
			return result{}, err
		}
		storeCPU, kind = pg.CPUTime, "PostgreSQL (its processes' CPU counted)"
	} else if replicas != 1 {
		return result{}, fmt.Errorf("-replicas %d: replicas share a PostgreSQL store: add -postgres", replicas)
	}
	enclave := sim.Enclave{MREnclave: sha256.Sum256([]byte("bench")), ISVProdID: 1}
	servers, addrs, roots, plat, err := start(dir, enclave, dsn, replicas)
	if err != nil {
		return result{}, err
	}
	defer func() {
		for _, s := range servers {
			s.Shutdown(context.Background())
		}
	}()

	load := "closed loop"
	if rate > 0 {
		load = fmt.Sprintf("%.0f requests/s offered", rate)
	}
	fmt.Printf("%d cores, %d clients, %d key releases, %s; every connection attested and audited; %d servers over %s\n\n",
		runtime.NumCPU(), clients, requests, load, replicas, kind)
	fmt.Printf("%10s %12s %10s %10s %10s %12s\n", "requests", "releases/s", "p50", "p99", "max", "heap in use")
	var next atomic.Int64
	var mu sync.Mutex
	var latencies []time.Duration
	var failures atomic.Int64
	window := requests / 10
	storeBefore, err := storeCPU()
	if err != nil {
		return result{}, err
	}
	cpuBefore := cpuTime()
	start := time.Now()
	windowStart := start
	report := func(done int) {
		mu.Lock()
		lat := slices.Clone(latencies[len(latencies)-window:])
		mu.Unlock()
		slices.Sort(lat)
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		now := time.Now()
		fmt.Printf("%10d %12.0f %10s %10s %10s %9.1f MiB\n", done, float64(window)/now.Sub(windowStart).Seconds(),
			lat[len(lat)/2].Round(10*time.Microsecond), lat[len(lat)*99/100].Round(10*time.Microsecond),
			lat[len(lat)-1].Round(10*time.Microsecond), float64(ms.HeapInuse)/(1<<20))
		windowStart = now
	}
	var wg sync.WaitGroup
	for i := range clients {
		// Each client asks one server first, the others after it.
		order := append(slices.Clone(addrs[i%len(addrs):]), addrs[:i%len(addrs)]...)
		c := &client.Client{Servers: order, Roots: roots, Attester: sim.Attester{Platform: plat, Enclave: enclave}}
		wg.Go(func() {
			for i := next.Add(1); i <= int64(requests); i = next.Add(1) {
				due := time.Now()
				if rate > 0 {
					due = start.Add(time.Duration(float64(i-1) / rate * float64(time.Second)))
					time.Sleep(time.Until(due))
				}
				_, err := c.Fetch(context.Background(), "default")
				d := time.Since(due)
				if err != nil {
					failures.Add(1)
					fmt.Fprintln(os.Stderr, "fetch:", err)
					continue
				}
				mu.Lock()
				latencies = append(latencies, d)
				n := len(latencies)
				mu.Unlock()
				if n%window == 0 {
					report(n)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	storeAfter, err := storeCPU()
	if err != nil {
		return result{}, err
	}
	cpuPerRelease := (cpuTime() - cpuBefore + storeAfter - storeBefore) / time.Duration(len(latencies))
	slices.Sort(latencies)
	releases := float64(len(latencies)) / elapsed.Seconds()
	p99 := latencies[len(latencies)*99/100]
	fmt.Printf("\nall: %.0f releases/s, p50 %s, p99 %s, %d failures, CPU %s per release\n", releases, latencies[len(latencies)/2].Round(10*time.Microsecond), p99.Round(10*time.Microsecond), failures.Load(), cpuPerRelease.Round(time.Microsecond))
	if rate > 0 {
		// The last requests are due at the end of the run, so the releases keep up with the
		// offered rate if they come close to it.
		fmt.Printf("targets at %.0f requests/s offered: kept up: %s; p99 < %s: %s\n", rate, verdict(releases >= 0.98*rate), maxP99, verdict(p99 < maxP99))
	} else {
		fmt.Printf("targets: >= %d releases/s: %s; p99 < %s: %s\n", minReleases, verdict(releases >= minReleases), maxP99, verdict(p99 < maxP99))
	}
	return result{releases, cpuPerRelease}, nil
}

// cpuTime returns the CPU time this process has used, in user and system mode.
func cpuTime() time.Duration {
	var u syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &u)
	return time.Duration(u.Utime.Nano() + u.Stime.Nano())
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

// start sets up replicas servers over the store dsn for one simulated workload and starts them
// on loopback.
func start(dir string, enclave sim.Enclave, dsn string, replicas int) ([]*provision.Server, []string, *x509.CertPool, *sim.Platform, error) {
	fail := func(err error) ([]*provision.Server, []string, *x509.CertPool, *sim.Platform, error) {
		return nil, nil, nil, nil, err
	}
	if err := provision.Setup(dir, []string{"localhost"}, time.Now()); err != nil {
		return fail(err)
	}
	plat, err := sim.Init(filepath.Join(dir, "sim"), "", time.Now())
	if err != nil {
		return fail(err)
	}
	config := fmt.Sprintf(`tls_cert = "server.crt"
tls_key = "server.key"
store = %q
master_key_file = "master.key"
sim_platforms = ["sim"]
max_connections = 1024
max_connections_per_peer = 1024

[[workload]]
name = "bench"
tee = "sgx"
mrenclave = ["%x"]
allow_simulated = true
keys = ["default"]
`, dsn, enclave.MREnclave)
	path := filepath.Join(dir, "server.toml")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		return fail(err)
	}
	cfg, err := provision.LoadConfig(path)
	if err != nil {
		return fail(err)
	}
	mk, err := store.ReadMasterKey(cfg.MasterKeyFile)
	if err != nil {
		return fail(err)
	}
	ca, err := os.ReadFile(filepath.Join(dir, provision.SetupCACert))
	if err != nil {
		return fail(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca)
	var servers []*provision.Server
	var addrs []string
	for i := range replicas {
		st, err := store.Open(cfg.Store, mk)
		if err != nil {
			return fail(err)
		}
		if i == 0 {
			if _, err := st.CreateKey(context.Background(), "default"); err != nil {
				return fail(err)
			}
		}
		server, err := provision.NewServer(cfg, st, nil, nil)
		if err != nil {
			return fail(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fail(err)
		}
		go server.Serve(ln)
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		servers, addrs = append(servers, server), append(addrs, "localhost:"+port)
	}
	return servers, addrs, roots, plat, nil
}
