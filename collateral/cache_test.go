package collateral

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// sgxExpiry is the earliest nextUpdate of sgxFixture: its PCK CRL's.
var sgxExpiry = time.Date(2023, 5, 21, 22, 0, 36, 0, time.UTC)

// clock is a settable clock for Cache.Now.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestNextUpdate(t *testing.T) {
	b := sgxFixture(t).want
	if got, err := b.NextUpdate(); err != nil || !got.Equal(sgxExpiry) {
		t.Errorf("NextUpdate() = %v, %v; want the PCK CRL's %v", got, err, sgxExpiry)
	}
	b.PCKCRL, b.RootCACRL = nil, nil
	if got, err := b.NextUpdate(); err != nil || !got.Equal(time.Date(2023, 8, 11, 19, 56, 44, 0, time.UTC)) {
		t.Errorf("without CRLs NextUpdate() = %v, %v; want the TCB info's", got, err)
	}
	b.QEIdentity = []byte(`{"enclaveIdentity":{"nextUpdate":"soon"}}`)
	if _, err := b.NextUpdate(); err == nil || !strings.Contains(err.Error(), "enclaveIdentity") {
		t.Errorf("bad QE identity: %v", err)
	}
	b = tdxFixture(t).want
	b.RootCACRL = []byte("garbage")
	if _, err := b.NextUpdate(); err == nil || !strings.Contains(err.Error(), "not a CRL") {
		t.Errorf("bad root CA CRL: %v", err)
	}
}

// newCache returns a cache in a new folder that fetches from a fake PCS serving fx.
func newCache(t *testing.T, fx fixture, at time.Time) (*Cache, *fakePCS, *clock) {
	s := newFakePCS(t, fx)
	clk := &clock{at}
	return &Cache{Dir: t.TempDir(), Fetcher: &Fetcher{BaseURL: s.URL}, Now: clk.now}, s, clk
}

// get calls c.Get and checks that it returns fx's bundle after n requests in all.
func get(t *testing.T, c *Cache, s *fakePCS, fx fixture, n int) {
	t.Helper()
	b, err := c.Get(context.Background(), fx.p)
	if err != nil {
		t.Fatal(err)
	}
	if !equal(b, fx.want) {
		t.Error("Get returned another bundle")
	}
	if got := s.count(); got != n {
		t.Errorf("%d requests, want %d", got, n)
	}
}

func TestCacheGet(t *testing.T) {
	fx := sgxFixture(t)
	c, s, clk := newCache(t, fx, sgxExpiry.Add(-20*24*time.Hour))
	get(t, c, s, fx, 4) // missing: fetched
	entry := filepath.Join(c.Dir, "sgx", "00906ed50000", "processor")
	if dir, err := c.EntryDir(fx.p); err != nil || dir != entry {
		t.Errorf("EntryDir = %s, %v; want %s", dir, err, entry)
	}
	b, err := ReadDir(entry, "00906ED50000")
	if err != nil {
		t.Fatal(err)
	}
	if !equal(b, fx.want) {
		t.Errorf("%s holds another bundle", entry)
	}

	get(t, c, s, fx, 4) // fresh: no request
	clk.t = sgxExpiry.Add(-time.Second)
	get(t, c, s, fx, 4)
	later := &Cache{Dir: c.Dir, Fetcher: c.Fetcher, Now: clk.now} // another process
	get(t, later, s, fx, 4)

	clk.t = sgxExpiry // stale: fetched again
	get(t, c, s, fx, 8)
	clk.t = sgxExpiry.Add(time.Hour) // the PCS still serves the same stale bundle
	get(t, c, s, fx, 12)

	entries, err := os.ReadDir(filepath.Dir(entry))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "processor" {
		t.Errorf("cache holds %v, want only the entry", entries)
	}
}

// TestCacheKeys checks that each TEE, FMSPC and CA has its own entry.
func TestCacheKeys(t *testing.T) {
	sgx, tdx := sgxFixture(t), tdxFixture(t)
	c, s, _ := newCache(t, sgx, sgxExpiry.Add(-time.Hour))
	get(t, c, s, sgx, 4)
	c.Fetcher = &Fetcher{BaseURL: newFakePCS(t, tdx).URL}
	if _, err := c.Get(context.Background(), tdx.p); err != nil {
		t.Fatal(err)
	}
	for _, p := range []Platform{sgx.p, tdx.p} {
		if _, err := os.Stat(filepath.Join(c.Dir, string(p.TEE), strings.ToLower(p.FMSPC), string(p.CA), TCBInfoFile)); err != nil {
			t.Error(err)
		}
	}
	other := sgx.p
	other.CA = PlatformCA
	if _, err := c.Load(other); err == nil || !strings.Contains(err.Error(), "no cached collateral for SGX FMSPC 00906ED50000 (platform CA)") {
		t.Errorf("Load of an entry never fetched: %v", err)
	}
}

// TestCacheOffline checks that a failed refresh leaves the cached bundle, which Load still reads
// and which exports to an offline bundle.
func TestCacheOffline(t *testing.T) {
	fx := sgxFixture(t)
	c, s, clk := newCache(t, fx, sgxExpiry.Add(-time.Hour))
	get(t, c, s, fx, 4)
	s.handle("/sgx/certification/v4/tcb", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	})
	clk.t = sgxExpiry.Add(time.Hour)
	if _, err := c.Get(context.Background(), fx.p); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("refresh from a failing PCS: %v", err)
	}
	b, err := c.Load(fx.p)
	if err != nil {
		t.Fatal(err)
	}
	if !equal(b, fx.want) {
		t.Error("the failed refresh changed the cached bundle")
	}

	offline := filepath.Join(t.TempDir(), "bundle")
	if err := b.WriteDir(offline); err != nil {
		t.Fatal(err)
	}
	if b, err = ReadDir(offline, fx.p.FMSPC); err != nil || !equal(b, fx.want) {
		t.Errorf("offline bundle: %v", err)
	}
}

// TestCacheDamagedEntry checks that an entry with a piece missing or unreadable is fetched again.
func TestCacheDamagedEntry(t *testing.T) {
	fx := tdxFixture(t)
	at := time.Date(2023, 7, 1, 0, 0, 0, 0, time.UTC)
	c, s, _ := newCache(t, fx, at)
	get(t, c, s, fx, 4)
	entry, _ := c.EntryDir(fx.p)
	for i, damage := range []func() error{
		func() error { return os.Remove(filepath.Join(entry, RootCACRLFile)) },
		func() error { return os.Remove(filepath.Join(entry, PCKCRLFile)) },
		func() error { return os.WriteFile(filepath.Join(entry, TCBInfoFile), []byte("{"), 0o644) },
		func() error { return os.WriteFile(filepath.Join(entry, PCKCRLFile), []byte("x"), 0o644) },
		func() error { return os.RemoveAll(entry) },
	} {
		if err := damage(); err != nil {
			t.Fatal(err)
		}
		get(t, c, s, fx, 4*(i+2))
		if b, err := ReadDir(entry, ""); err != nil || !equal(b, fx.want) {
			t.Errorf("damage %d not repaired: %v", i, err)
		}
	}
}

func TestCacheBadPlatform(t *testing.T) {
	fx := sgxFixture(t)
	c, s, _ := newCache(t, fx, sgxExpiry)
	bad := Platform{SGX, "../../../../", ProcessorCA}
	if _, err := c.Get(context.Background(), bad); err == nil {
		t.Error("Get accepted a bad FMSPC")
	}
	if _, err := c.Load(bad); err == nil {
		t.Error("Load accepted a bad FMSPC")
	}
	if s.count() != 0 {
		t.Error("requests for a bad platform")
	}
}

func TestCacheUnwritable(t *testing.T) {
	fx := sgxFixture(t)
	c, _, _ := newCache(t, fx, sgxExpiry)
	c.Dir = filepath.Join(c.Dir, "file")
	if err := os.WriteFile(c.Dir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(context.Background(), fx.p); err == nil || !strings.Contains(err.Error(), c.Dir) {
		t.Errorf("cache in a file: %v", err)
	}
}

func TestDefaultCacheDir(t *testing.T) {
	home := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", home)
	t.Setenv("HOME", home)
	want := filepath.Join(home, "ppml", "collateral")
	if dir, err := DefaultCacheDir(); err != nil || dir != want {
		t.Errorf("DefaultCacheDir() = %s, %v; want %s", dir, err, want)
	}
	p := Platform{TDX, "50806F000000", PlatformCA}
	if dir, err := new(Cache).EntryDir(p); err != nil || dir != filepath.Join(want, "tdx", "50806f000000", "platform") {
		t.Errorf("EntryDir = %s, %v", dir, err)
	}
}

// TestReplaceDir checks that readers of a cache entry see one whole bundle or none while writers
// replace it.
func TestReplaceDir(t *testing.T) {
	bundles := []*Bundle{sgxFixture(t).want, tdxFixture(t).want}
	dir := filepath.Join(t.TempDir(), "entry")
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			for i := range 5 {
				if err := replaceDir(dir, bundles[(w+i)%2]); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for reads := 0; ; reads++ {
		select {
		case <-done:
			if entries, _ := os.ReadDir(filepath.Dir(dir)); len(entries) != 1 {
				t.Errorf("left behind: %v", entries)
			}
			return
		default:
		}
		b, err := readEntry(dir)
		if err == nil && !equal(b, bundles[0]) && !equal(b, bundles[1]) {
			t.Errorf("read %d: a mix of two bundles", reads)
			<-done
			return
		}
	}
}
