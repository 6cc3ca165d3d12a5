package sandbox

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/ppml/ppml/internal/atomicfile"
	"github.com/ppml/ppml/manifest"
	"github.com/ppml/ppml/trustfs"
)

// The order file of a manifest (Options.CheckAhead) is in the folder that Options.CheckAhead
// names, under the manifest's measurement in hex: the host paths of the trusted files that its
// workload opened last time, one a line, in the order of their first opens. The host may have
// written it: it is a hint, which orders the checks and nothing else.

// maxOrderLine bounds the lines of an order file, which are host paths.
const maxOrderLine = 4096

// orderFile returns the order file of m in the folder dir.
func orderFile(dir string, m *manifest.Manifest) string {
	sum := manifest.Measure(m)
	return filepath.Join(dir, hex.EncodeToString(sum[:]))
}

// readOrder returns the Host (trustfs.Entry) of each line of the order file r, in order, that is
// the host file of one of the Trusted entries, each once: at most one line for each of them is
// read.
func readOrder(r io.Reader, entries []trustfs.Entry) []string {
	trusted := map[string]bool{}
	for _, e := range entries {
		if e.Kind == trustfs.Trusted {
			trusted[e.Host] = true
		}
	}
	var hosts []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 256), maxOrderLine)
	for lines := len(trusted); lines > 0 && sc.Scan(); lines-- {
		host, ok := strings.CutPrefix(sc.Text(), "/")
		if ok && trusted[host] {
			hosts = append(hosts, host)
			delete(trusted, host)
		}
	}
	return hosts
}

// checkAhead returns the host files, as trustfs.Options.CheckAhead names them, that the order
// file of m in dir lists; none if there is none, or dir is "".
func checkAhead(dir string, m *manifest.Manifest, entries []trustfs.Entry) []string {
	if dir == "" {
		return nil
	}
	f, err := os.Open(orderFile(dir, m))
	if err != nil {
		return nil
	}
	defer f.Close()
	return readOrder(f, entries)
}

// writeOrder replaces the order file of m in dir with the trusted files opened, as
// trustfs.Stats.Opened names them; it makes dir if need be.
func writeOrder(dir string, m *manifest.Manifest, opened []string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	var b bytes.Buffer
	for _, host := range opened {
		b.WriteString("/" + host + "\n")
	}
	return atomicfile.WriteFile(orderFile(dir, m), b.Bytes(), 0o600, true)
}
