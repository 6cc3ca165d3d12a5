package sandbox

import (
	"os"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/ppml/ppml/manifest"
)

// CheckTrustedFiles checks every trusted file of m against the hash the manifest holds, hashing
// files in parallel on every core, and returns the number of bytes it hashed. The error names
// the first file found missing, unreadable or changed. Relative paths are relative to the
// current folder.
func CheckTrustedFiles(m *manifest.Manifest) (int64, error) {
	if err := m.CheckHashed(); err != nil {
		return 0, err
	}
	var (
		next   atomic.Int64 // the index of the next file to check
		hashed atomic.Int64
		failed atomic.Bool
		once   sync.Once
		first  error
		wg     sync.WaitGroup
	)
	for range min(runtime.GOMAXPROCS(0), len(m.TrustedFiles)) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(m.TrustedFiles) && !failed.Load(); i = int(next.Add(1) - 1) {
				p := m.TrustedFiles[i].Path()
				err := m.CheckTrustedFile(p)
				if err != nil {
					failed.Store(true)
					once.Do(func() { first = err })
					return
				}
				if info, err := os.Stat(p); err == nil {
					hashed.Add(info.Size())
				}
			}
		})
	}
	wg.Wait()
	return hashed.Load(), first
}
