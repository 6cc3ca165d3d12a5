package manifest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"

	"github.com/BurntSushi/toml"
)

// HashTrustedFiles returns the manifest with its trusted files expanded and hashed, as
// gramine-manifest does. Relative paths are relative to dir ("" for the current folder).
//
// An entry that has a hash keeps it. A "file:PATH/" entry stands for every regular file below
// the folder PATH, recursively, in sorted order; symbolic links to files count, while symbolic
// links to folders, special files and what cannot be read are skipped. Each file becomes
// { uri = "file:PATH", sha256 = "HEX" }, PATH being cleaned (path.Clean) but otherwise as
// written. A file listed twice appears once, where first listed, and two different hashes for
// it are an error; so is a trusted file that does not exist.
//
// The files are listed first, then hashed on every core, a host file that several paths name
// (a folder and a symbolic link to it, say) once.
func (m *Manifest) HashTrustedFiles(dir string) (*Manifest, error) {
	return m.hashTrustedFiles(dir, nil)
}

// hashTrustedFiles is HashTrustedFiles, which counts the bytes it hashes on the writer that
// progress returns, given their total, when progress is not nil.
func (m *Manifest) hashTrustedFiles(dir string, progress func(total int64) io.Writer) (*Manifest, error) {
	if len(m.TrustedFiles) == 0 {
		return m, nil
	}
	e := expansion{dir: dir, index: map[string]int{}, given: map[string]bool{}, late: map[int]bool{}}
	for _, tf := range m.TrustedFiles {
		if err := e.entry(tf); err != nil {
			return nil, err
		}
	}
	if err := e.hash(progress); err != nil {
		return nil, err
	}
	var tree map[string]any
	if _, err := toml.Decode(string(m.canonical), &tree); err != nil {
		return nil, err
	}
	list := make([]any, len(e.files))
	for i, f := range e.files {
		list[i] = map[string]any{"uri": f.URI, "sha256": f.SHA256}
	}
	tree["sgx"].(map[string]any)["trusted_files"] = list
	b, err := encode(tree)
	if err != nil {
		return nil, err
	}
	return Parse(b)
}

// expansion is the list of trusted files that HashTrustedFiles builds.
type expansion struct {
	dir   string
	files []TrustedFile
	index map[string]int  // cleaned path → position in files
	given map[string]bool // the paths whose hash the manifest gave
	late  map[int]bool    // the files whose hash the manifest gave after listing them to hash
	work  []toHash
}

// toHash is a host file to hash for files[i]: to fill in its hash, or to compare with the one
// that the manifest gave.
type toHash struct {
	i    int
	host string
	sum  string
	err  error
}

func (e *expansion) entry(tf TrustedFile) error {
	p := tf.Path()
	if tf.SHA256 != "" {
		return e.add(path.Clean(p), tf.SHA256, true)
	}
	host := p
	if !filepath.IsAbs(p) {
		host = filepath.Join(e.dir, p)
	}
	info, err := os.Stat(host)
	if err != nil {
		return fmt.Errorf("trusted file %s: %w", tf.URI, err)
	}
	switch folder := strings.HasSuffix(p, "/"); {
	case folder && !info.IsDir():
		return fmt.Errorf("trusted file %s ends with / but is not a folder", tf.URI)
	case folder:
		return e.folder(host, path.Clean(p))
	case info.IsDir():
		return fmt.Errorf(`trusted file %s is a folder: end it with "/" to trust every file in it`, tf.URI)
	case !info.Mode().IsRegular():
		return fmt.Errorf("trusted file %s is not a regular file", tf.URI)
	}
	e.file(host, path.Clean(p))
	return nil
}

// folder adds the files below the host folder, whose manifest path is p.
func (e *expansion) folder(host, p string) error {
	entries, err := os.ReadDir(host)
	if errors.Is(err, fs.ErrPermission) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("trusted folder %s: %w", p, err)
	}
	for _, d := range entries {
		h, q := filepath.Join(host, d.Name()), path.Join(p, d.Name())
		switch t := d.Type(); {
		case t.IsDir():
			if err := e.folder(h, q); err != nil {
				return err
			}
		case t.IsRegular():
			e.file(h, q)
		case t&fs.ModeSymlink != 0:
			if info, serr := os.Stat(h); serr == nil && info.Mode().IsRegular() {
				e.file(h, q)
			}
		}
	}
	return nil
}

// file adds the host file, whose manifest path is p, to be hashed, unless it is already.
func (e *expansion) file(host, p string) {
	i, ok := e.index[p]
	switch {
	case ok && !e.given[p]:
		return
	case !ok:
		i = len(e.files)
		e.index[p] = i
		e.files = append(e.files, TrustedFile{URI: "file:" + p})
	}
	e.given[p] = false // compared once
	e.work = append(e.work, toHash{i: i, host: host})
}

func (e *expansion) add(p, sum string, given bool) error {
	if i, ok := e.index[p]; ok {
		if e.files[i].SHA256 == "" { // to be hashed: compared then
			e.files[i].SHA256 = sum
			e.late[i] = true
			return nil
		}
		if e.files[i].SHA256 != sum {
			return fmt.Errorf("trusted file file:%s has two different hashes: %s and %s", p, e.files[i].SHA256, sum)
		}
		return nil
	}
	e.index[p] = len(e.files)
	e.files = append(e.files, TrustedFile{URI: "file:" + p, SHA256: sum})
	e.given[p] = given
	return nil
}

// hash hashes the files of e.work on every core, each host file once, and fills in their
// hashes, or reports the first that cannot be read or differs from the hash given for it.
func (e *expansion) hash(progress func(total int64) io.Writer) error {
	type fileID struct{ dev, ino uint64 }
	first := map[fileID]int{} // the host file's first job
	same := make([]int, len(e.work))
	var unique []int
	var total int64
	for j := range e.work {
		same[j] = j
		var st syscall.Stat_t
		if err := syscall.Stat(e.work[j].host, &st); err != nil {
			unique = append(unique, j) // hashFile reports it
			continue
		}
		id := fileID{st.Dev, st.Ino}
		if k, ok := first[id]; ok {
			same[j] = k
			continue
		}
		first[id] = j
		unique = append(unique, j)
		total += st.Size
	}
	bar := io.Discard
	if progress != nil {
		bar = progress(total)
	}
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range min(runtime.NumCPU(), len(unique)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				e.work[j].sum, e.work[j].err = hashFile(e.work[j].host, bar)
			}
		}()
	}
	for _, j := range unique {
		jobs <- j
	}
	close(jobs)
	wg.Wait()
	for j, w := range e.work {
		f := &e.files[w.i]
		done := e.work[same[j]]
		switch {
		case done.err != nil:
			return fmt.Errorf("trusted file %s: %w", f.URI, done.err)
		case f.SHA256 == "":
			f.SHA256 = done.sum
		case f.SHA256 != done.sum && e.late[w.i]:
			return fmt.Errorf("trusted file %s has two different hashes: %s and %s", f.URI, done.sum, f.SHA256)
		case f.SHA256 != done.sum:
			return fmt.Errorf("trusted file %s has two different hashes: %s and %s", f.URI, f.SHA256, done.sum)
		}
	}
	return nil
}

// hashFile returns the SHA-256 of the file name in hex, counting the bytes it reads on bar.
func hashFile(name string, bar io.Writer) (string, error) {
	f, err := os.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(h, bar), f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// CheckHashed reports the first trusted file that has no hash yet.
func (m *Manifest) CheckHashed() error {
	for _, tf := range m.TrustedFiles {
		if tf.SHA256 == "" {
			return fmt.Errorf("trusted file %s has no hash (ppml manifest render hashes the trusted files)", tf.URI)
		}
	}
	return nil
}

// ReadTrustedFile returns the content of the host file p, which must be a trusted file, as it
// read it: the bytes it returns are the ones it hashed and found to be the manifest's, however
// the file changes meanwhile. The error names the file. Relative paths, in p and in the
// manifest, are relative to the current folder.
func (m *Manifest) ReadTrustedFile(p string) ([]byte, error) {
	want, err := m.trustedHash(p)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("trusted file %s: %w", p, err)
	}
	h := sha256.Sum256(b)
	if got := hex.EncodeToString(h[:]); got != want {
		return nil, fmt.Errorf("trusted file %s has changed since the manifest was made: its SHA-256 is %s, the manifest has %s", p, got, want)
	}
	return b, nil
}

// trustedHash returns the hash that the manifest gives the trusted file p.
func (m *Manifest) trustedHash(p string) (string, error) {
	m.indexOnce.Do(func() {
		m.index = make(map[string]string, len(m.TrustedFiles))
		for _, tf := range m.TrustedFiles {
			abs, err := filepath.Abs(tf.Path())
			if err != nil {
				m.indexErr = err
				return
			}
			m.index[abs] = tf.SHA256
		}
	})
	if m.indexErr != nil {
		return "", m.indexErr
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	want, ok := m.index[abs]
	switch {
	case !ok:
		return "", fmt.Errorf("%s is not a trusted file of the manifest", p)
	case want == "":
		return "", fmt.Errorf("trusted file %s has no hash (ppml manifest render hashes the trusted files)", p)
	}
	return want, nil
}
