package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
)

// How ppml stops on SIGINT and SIGTERM.
//
// The first signal cancels the context of the command running (cmd.Context(): run gives
// ExecuteContext a context from signal.NotifyContext). What else happens is up to the command,
// which says how it stops with stopBy:
//
//   - abortAtOnce, for commands that do not watch their context: ppml removes the unfinished
//     outputs (atomicfile.AbortAll) and exits at once with 128+N, N the signal's number.
//   - stopOnContext (ppml serve): the command stops by itself when its context ends, which may
//     take a while; a second signal while it stops aborts it at once, as above.
//   - forwardSignals (ppml run): the command passes every signal on (to its workload) and ends
//     when the workload does; ppml does not stop on its own.
type stopping int32

const (
	abortAtOnce stopping = iota
	stopOnContext
	forwardSignals
)

// interrupts watches for SIGINT and SIGTERM while ppml runs a command.
type interrupts struct {
	c        chan os.Signal
	stderr   io.Writer
	how      atomic.Int32 // a stopping
	stopping bool         // a signal came in stopOnContext: the command stops (watch only)
	done     chan struct{}
	watching sync.WaitGroup
	stopCtx  context.CancelFunc // NotifyContext's
}

type interruptsKey struct{}

// catchInterrupts starts watching for SIGINT and SIGTERM; ppml's messages go to stderr. The
// context returned is ctx, cancelled by the first signal, and carrying the watch for stopBy.
// Stop it with close.
func catchInterrupts(ctx context.Context, stderr io.Writer) (context.Context, *interrupts) {
	h := &interrupts{c: make(chan os.Signal, 2), stderr: stderr, done: make(chan struct{})}
	// Before NotifyContext: a signal that cancels the context is also on h.c.
	signal.Notify(h.c, os.Interrupt, syscall.SIGTERM)
	h.watching.Go(h.watch)
	ctx, h.stopCtx = signal.NotifyContext(context.WithValue(ctx, interruptsKey{}, h), os.Interrupt, syscall.SIGTERM)
	return ctx, h
}

func (h *interrupts) watch() {
	for {
		select {
		case sig := <-h.c:
			h.handle(sig)
		case <-h.done:
			// The signals that came before close are handled still, so that one that ended the
			// command's context ends ppml as it would have had the command not returned first.
			for {
				select {
				case sig := <-h.c:
					h.handle(sig)
				default:
					return
				}
			}
		}
	}
}

func (h *interrupts) handle(sig os.Signal) {
	switch stopping(h.how.Load()) {
	case forwardSignals:
		return
	case stopOnContext:
		if !h.stopping {
			h.stopping = true // the context is cancelled: the command is stopping
			return
		}
		abort(h.stderr, sig, fmt.Sprintf("%v while stopping: stopped at once", sig))
	default:
		abort(h.stderr, sig, fmt.Sprintf("%v: stopped, no output written", sig))
	}
}

// close stops the watch, once the signals that came before are handled: if one of them aborts
// ppml, close does not return.
func (h *interrupts) close() {
	signal.Stop(h.c) // after it, every signal that came before is on h.c, or handled
	close(h.done)
	h.watching.Wait()
	h.stopCtx()
}

// stopBy says how the command whose context is ctx stops on SIGINT and SIGTERM from now on (see
// stopping), and returns the function that restores how it stopped before. Outside run (ctx
// without a watch), it does nothing.
func stopBy(ctx context.Context, how stopping) (restore func()) {
	h, _ := ctx.Value(interruptsKey{}).(*interrupts)
	if h == nil {
		return func() {}
	}
	before := h.how.Swap(int32(how))
	return func() { h.how.Store(before) }
}
