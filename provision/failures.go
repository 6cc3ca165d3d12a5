package provision

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/ppml/ppml/store"
)

// failureInterval is how long the failed handshakes that follow one from the same address are
// counted before their summary is recorded.
const failureInterval = time.Minute

// failureLog keeps garbage from flooding the audit log. A failed TLS handshake shows no
// evidence, so one record per connection would tell the owner nothing more than a count: the
// first failure from an address is recorded at once, as any connection is, and those from the
// same address in the failureInterval that follows are counted, and recorded in one summary
// when the interval ends, or at close.
type failureLog struct {
	interval time.Duration
	write    func(store.AuditRecord) // appends a record to the audit log

	mu      sync.Mutex
	closed  bool                      // the summaries are written: record each failure at once
	windows map[string]*failureWindow // by peer address, while its interval runs
	writing sync.WaitGroup            // summaries that a timer is writing
}

// failureWindow counts the failures from one address that follow the first of an interval.
type failureWindow struct {
	since time.Time         // the first failure, recorded at once
	n     int               // the failures since
	last  store.AuditRecord // the last of them
	timer *time.Timer       // ends the interval
}

// add records rec, a failed handshake from the peer address addr: at once if it is the first of
// an interval, else in the interval's summary. It reports whether it wrote rec.
func (f *failureLog) add(addr string, rec store.AuditRecord) bool {
	f.mu.Lock()
	if w := f.windows[addr]; w != nil {
		w.n++
		w.last = rec
		f.mu.Unlock()
		return false
	}
	if !f.closed {
		if f.windows == nil {
			f.windows = map[string]*failureWindow{}
		}
		w := &failureWindow{since: rec.Time}
		w.timer = time.AfterFunc(f.interval, func() { f.end(addr, w) })
		f.windows[addr] = w
	}
	f.mu.Unlock()
	f.write(rec)
	return true
}

// end ends the interval of w, addr's, and writes its summary.
func (f *failureLog) end(addr string, w *failureWindow) {
	f.mu.Lock()
	if f.windows[addr] != w { // close took it
		f.mu.Unlock()
		return
	}
	delete(f.windows, addr)
	if w.n == 0 {
		f.mu.Unlock()
		return
	}
	f.writing.Add(1)
	f.mu.Unlock()
	defer f.writing.Done()
	f.write(w.summary(addr))
}

// close writes the summaries of the intervals that run, and waits for those being written:
// none is lost. The failures that follow are recorded one by one.
func (f *failureLog) close() {
	f.mu.Lock()
	f.closed = true
	windows := f.windows
	f.windows = nil
	for _, w := range windows {
		w.timer.Stop()
	}
	f.mu.Unlock()
	for addr, w := range windows {
		if w.n > 0 {
			f.write(w.summary(addr))
		}
	}
	f.writing.Wait()
}

// summary is the audit record of the failures that w counts. It is dated by the last of them,
// and says when the first was.
func (w *failureWindow) summary(addr string) store.AuditRecord {
	rec := w.last
	rec.Peer = addr
	s := "s"
	if w.n == 1 {
		s = ""
	}
	rec.Reason = fmt.Sprintf("%d more TLS handshake failure%s from %s since %s; the last: %s",
		w.n, s, addr, w.since.Format(time.RFC3339), strings.TrimPrefix(w.last.Reason, handshakeReason))
	return rec
}
