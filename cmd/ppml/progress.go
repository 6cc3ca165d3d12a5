package main

import (
	"io"
	"os"
	"sync"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progressMin is the smallest file that gets a progress bar.
const progressMin = 64 << 20

var (
	shownMu sync.Mutex
	shown   *progressbar.ProgressBar // the bar on the terminal, if any
)

// newProgress returns a writer that counts bytes on a progress bar on w, or io.Discard when w is
// not a terminal or the work is small. Call finish when done: it erases the bar.
func newProgress(w io.Writer, size int64, label string) (bar io.Writer, finish func()) {
	f, ok := w.(*os.File)
	if !ok || size < progressMin || !term.IsTerminal(int(f.Fd())) {
		return io.Discard, func() {}
	}
	return showProgress(w, size, label)
}

// showProgress shows a progress bar on w for size bytes; one at a time.
func showProgress(w io.Writer, size int64, label string) (bar io.Writer, finish func()) {
	b := progressbar.NewOptions64(size,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(label),
		progressbar.OptionShowBytes(true),
		progressbar.OptionThrottle(100e6),
		progressbar.OptionClearOnFinish(),
	)
	// Shown at once, at 0%, the bar's first rate comes a throttle's 100 ms later at the soonest:
	// a bar that the first bytes start would divide them by the microseconds since.
	b.RenderBlank()
	shownMu.Lock()
	shown = b
	shownMu.Unlock()
	return b, clearProgress
}

// clearProgress stops the progress bar on the terminal, if any, and erases it: call it before a
// message, so that the message starts its own line.
func clearProgress() {
	shownMu.Lock()
	defer shownMu.Unlock()
	if shown != nil {
		shown.Exit() // no update after this one
		shown.Clear()
		shown = nil
	}
}
