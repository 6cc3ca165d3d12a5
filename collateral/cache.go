package collateral

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// DefaultCacheDir returns the default cache folder, ppml/collateral under the user's cache folder
// (os.UserCacheDir: $XDG_CACHE_HOME or ~/.cache on Linux).
func DefaultCacheDir() (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no collateral cache folder: %w", err)
	}
	return filepath.Join(dir, "ppml", "collateral"), nil
}

// Cache keeps fetched collateral on disk, one folder per platform in the layout of [ReadDir]
// (Dir/<tee>/<fmspc>/<ca>, lower case), and fetches it again once any piece is past its
// nextUpdate. The fields are read-only once the Cache is in use; it is then safe for concurrent
// use, also by several processes sharing Dir.
type Cache struct {
	// Dir is the cache folder; "" means [DefaultCacheDir].
	Dir string
	// Fetcher fetches missing or stale collateral; nil means the zero Fetcher (Intel's PCS).
	Fetcher *Fetcher
	// Now is the clock that decides freshness; nil means time.Now.
	Now func() time.Time
}

// EntryDir returns the folder that holds the collateral of p.
func (c *Cache) EntryDir(p Platform) (string, error) {
	if err := p.check(); err != nil {
		return "", err
	}
	root := c.Dir
	if root == "" {
		var err error
		if root, err = DefaultCacheDir(); err != nil {
			return "", err
		}
	}
	return filepath.Join(root, string(p.TEE), strings.ToLower(p.FMSPC), string(p.CA)), nil
}

// Get returns the collateral of p: the cached bundle if it is complete and before its
// [Bundle.NextUpdate], else a newly fetched one, which replaces the cached one. A fetched bundle
// is returned and cached even if Intel's service served it already stale; the verifier judges.
func (c *Cache) Get(ctx context.Context, p Platform) (*Bundle, error) {
	dir, err := c.EntryDir(p)
	if err != nil {
		return nil, err
	}
	if b, err := readEntry(dir); err == nil {
		if next, err := b.NextUpdate(); err == nil && c.now().Before(next) {
			return b, nil
		}
	}
	f := c.Fetcher
	if f == nil {
		f = new(Fetcher)
	}
	b, err := f.Fetch(ctx, p)
	if err != nil {
		return nil, err
	}
	if err := replaceDir(dir, b); err != nil {
		return nil, fmt.Errorf("store in cache: %w", err)
	}
	return b, nil
}

// Load returns the cached collateral of p as it is, fresh or not, without fetching: what an
// offline machine has. Write it elsewhere with [Bundle.WriteDir] to make an offline bundle.
func (c *Cache) Load(p Platform) (*Bundle, error) {
	dir, err := c.EntryDir(p)
	if err != nil {
		return nil, err
	}
	b, err := readEntry(dir)
	if err != nil {
		return nil, fmt.Errorf("no cached collateral for %v: %w", p, err)
	}
	return b, nil
}

// readEntry reads a cache entry, which must be complete, through one handle on its folder, so
// that it reads a bundle whole, or fails, while [replaceDir] replaces it.
func readEntry(dir string) (*Bundle, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	b, err := readFS(root.FS(), dir, "")
	if err != nil {
		return nil, err
	}
	for _, f := range b.fields() {
		if len(*f.data) == 0 {
			return nil, fmt.Errorf("collateral %s: missing %s", dir, f.name)
		}
	}
	return b, nil
}

func (c *Cache) now() time.Time {
	if c.Now == nil {
		return time.Now()
	}
	return c.Now()
}

// NextUpdate returns the earliest nextUpdate of b's pieces: the TCB info, the QE identity and
// the CRLs present. Past it, Intel has newer collateral.
func (b *Bundle) NextUpdate() (time.Time, error) {
	var next []time.Time
	for _, j := range []struct {
		body      []byte
		key, what string
	}{{b.TCBInfo, "tcbInfo", "TCB info"}, {b.QEIdentity, "enclaveIdentity", "QE identity"}} {
		m, err := readMeta(j.body, j.key)
		if err != nil {
			return time.Time{}, fmt.Errorf("%s: %w", j.what, err)
		}
		next = append(next, m.NextUpdate)
	}
	for _, c := range []struct {
		der  []byte
		what string
	}{{b.PCKCRL, "PCK CRL"}, {b.RootCACRL, "root CA CRL"}} {
		if len(c.der) == 0 {
			continue
		}
		_, crl, err := decodeCRL(c.der)
		if err != nil {
			return time.Time{}, fmt.Errorf("%s: %w", c.what, err)
		}
		next = append(next, crl.NextUpdate)
	}
	earliest := next[0]
	for _, t := range next[1:] {
		if t.Before(earliest) {
			earliest = t
		}
	}
	return earliest, nil
}

// replaceDir writes b into dir so that a reader finds the old bundle, the new one or, for a
// moment, none, but never a mix: it writes a new folder beside dir and renames it into place.
func replaceDir(dir string, b *Bundle) error {
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(parent, ".new-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	if err := b.WriteDir(tmp); err != nil {
		return err
	}
	old := tmp + ".old"
	if err := os.Rename(dir, old); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	defer os.RemoveAll(old)
	if err := os.Rename(tmp, dir); err != nil {
		if _, statErr := os.Stat(dir); statErr == nil {
			return nil // another writer put its bundle in place between our renames
		}
		os.Rename(old, dir)
		return err
	}
	return nil
}

// Source gives the collateral of a platform.
type Source func(ctx context.Context, p Platform) (*Bundle, error)

// OpenSource returns the source that where names: a folder of collateral (ReadDir), which must
// exist, the http(s) URL of Intel's PCS or of a PCCS fetched through the cache in
// DefaultCacheDir, or, when where is empty, Intel's PCS through that cache. The cache keeps the
// collateral of each TEE apart, so one source serves SGX and TDX platforms alike.
func OpenSource(where string) (Source, error) {
	if where != "" && !strings.Contains(where, "://") {
		if fi, err := os.Stat(where); err != nil {
			return nil, fmt.Errorf("collateral folder: %w", err)
		} else if !fi.IsDir() {
			return nil, fmt.Errorf("collateral folder %s is not a folder", where)
		}
		return func(_ context.Context, p Platform) (*Bundle, error) { return ReadDir(where, p.FMSPC) }, nil
	}
	dir, err := DefaultCacheDir()
	if err != nil {
		return nil, err
	}
	return (&Cache{Dir: dir, Fetcher: &Fetcher{BaseURL: where}}).Get, nil
}
