package trustfs

import (
	"context"
	"runtime"

	"golang.org/x/sys/unix"
)

// aheadNice is the niceness of the thread that checks files ahead of their opens: the lowest
// priority, so that the workload, and the requests of the mount that it waits for, come first.
const aheadNice = 19

// aheadOf returns the trusted files of entries whose host files hosts names, in that order and
// each once; the names of no Trusted entry are left out.
func (s *fsys) aheadOf(entries []Entry, hosts []string) []*trusted {
	if len(hosts) == 0 {
		return nil
	}
	byHost := map[string]Entry{}
	for _, e := range entries {
		if e.Kind == Trusted {
			byHost[e.Host] = e
		}
	}
	var files []*trusted
	for _, h := range hosts {
		if e, ok := byHost[h]; ok {
			files = append(files, s.trustedFile(e))
			delete(byHost, h)
		}
	}
	return files
}

// checkAhead checks files, in order, unless checked already, as their first opens would, with
// one worker, until ctx is done. It runs on a thread of its own at the lowest priority.
func (s *fsys) checkAhead(ctx context.Context, files []*trusted) {
	if len(files) == 0 {
		return
	}
	// Never unlocked: the thread, whose priority is lowered, ends with this goroutine.
	runtime.LockOSThread()
	if err := unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), aheadNice); err != nil {
		s.log.Debug("trustfs: the files checked ahead of their opens are checked at normal priority", "err", err)
	}
	for _, t := range files {
		if ctx.Err() != nil {
			return
		}
		if t.checked.Load() != nil {
			continue
		}
		f, err := s.root.OpenFile(t.host, hostReadFlags, 0)
		if err != nil {
			continue // the open will say why
		}
		s.check(ctx, t, f, 1)
		go f.Close() // which waits for the reads of a check given up on
	}
}
