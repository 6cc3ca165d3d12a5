package main

import (
	"io"
	"os"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progressMin is the smallest file that gets a progress bar.
const progressMin = 64 << 20

// newProgress returns a writer that counts bytes on a progress bar on w, or io.Discard when w is
// not a terminal or the work is small. Call finish when done.
func newProgress(w io.Writer, size int64, label string) (bar io.Writer, finish func()) {
	f, ok := w.(*os.File)
	if !ok || size < progressMin || !term.IsTerminal(int(f.Fd())) {
		return io.Discard, func() {}
	}
	b := progressbar.NewOptions64(size,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(label),
		progressbar.OptionShowBytes(true),
		progressbar.OptionThrottle(100e6),
		progressbar.OptionClearOnFinish(),
	)
	return b, func() { b.Finish() }
}
