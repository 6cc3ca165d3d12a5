package store

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// groupCommit commits audit records in groups: each durable commit costs a disk flush (and, in
// PostgreSQL, the chain's lock and a round trip), and the records that wait for the same
// commit share it. Both backends append through it.
type groupCommit struct {
	// commit writes batch in one transaction, after the chain's head, and sets the ID and
	// hashes of each record (chain); it returns the transaction's outcome.
	commit func(ctx context.Context, batch []*pendingRecord) error

	queueMu  sync.Mutex
	queue    []*pendingRecord // audit records waiting for a commit
	commitMu sync.Mutex       // held by the caller that commits the queue
}

// pendingRecord is an audit record on its way to the database. Its other fields are set under
// commitMu.
type pendingRecord struct {
	r    AuditRecord
	done bool
	err  error
}

// append adds r to the next commit and returns its ID once that commit is durable. A commit
// may carry other callers' records, so once under way it is not cancelled with ctx.
func (g *groupCommit) append(ctx context.Context, r AuditRecord) (int64, error) {
	if err := r.check(); err != nil {
		return 0, err
	}
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	p := &pendingRecord{r: r}
	g.queueMu.Lock()
	g.queue = append(g.queue, p)
	g.queueMu.Unlock()

	g.commitMu.Lock()
	defer g.commitMu.Unlock()
	if !p.done { // no one committed it while this call waited: commit all that wait
		g.queueMu.Lock()
		batch := g.queue
		g.queue = nil
		g.queueMu.Unlock()
		err := g.commit(context.WithoutCancel(ctx), batch)
		for _, p := range batch {
			p.done, p.err = true, err
		}
	}
	if p.err != nil {
		return 0, fmt.Errorf("append audit record: %w", p.err)
	}
	return p.r.ID, nil
}
