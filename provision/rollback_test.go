package provision

import (
	"bytes"
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ppml/ppml/attest/sim"
	"github.com/ppml/ppml/store"
)

// anchored is byEnclave with a checkpoint file.
const anchored = `audit_checkpoint_file = "checkpoints.jsonl"
` + byEnclave

// rollback runs SQL on the testbed's database directly, as someone who can write it but has no
// master key could.
func (tb *testbed) rollback(t *testing.T, statements ...string) {
	t.Helper()
	db, err := sql.Open("sqlite", filepath.Join(tb.dir, "ppml.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range statements {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// fetchDefault fetches the key "default" and returns it, or the reason of the refusal that the
// audit log holds.
func (tb *testbed) fetchDefault(t *testing.T) ([]byte, string) {
	t.Helper()
	seen := len(tb.audit(t))
	keys, err := tb.client(sim.Attester{Platform: tb.plat, Enclave: tb.enclave}).Fetch(context.Background(), "default")
	if err == nil {
		return keys[0], ""
	}
	rec := tb.lastAudit(t, seen)
	if rec.Decision != store.Deny {
		t.Fatalf("fetch failed (%v) but the audit record is %+v", err, rec)
	}
	return nil, rec.Reason
}

// TestRollbackRefused: once the server released a version of a key, it releases no older one, in
// each way someone who can write the database brings one back.
func TestRollbackRefused(t *testing.T) {
	for _, c := range []struct {
		name   string
		tamper []string
		reason string
	}{
		{"current version set back", []string{`UPDATE keys SET current_version = 1 WHERE name = 'default'`},
			`key "default": the store holds version 1, but this server knows the key reached version 2`},
		{"newer version deleted", []string{`DELETE FROM key_versions WHERE name = 'default' AND version = 2`},
			`key "default" version 2: its current version is missing from the store`},
		{"newer version deleted, current set back", []string{`DELETE FROM key_versions WHERE name = 'default' AND version = 2`,
			`UPDATE keys SET current_version = 1 WHERE name = 'default'`},
			`key "default": the store holds version 1, but this server knows the key reached version 2`},
	} {
		t.Run(c.name, func(t *testing.T) {
			tb := newTestbed(t, byEnclave)
			if _, err := tb.store.RotateKey(context.Background(), "default"); err != nil {
				t.Fatal(err)
			}
			v2, reason := tb.fetchDefault(t)
			if reason != "" {
				t.Fatal(reason)
			}
			tb.rollback(t, c.tamper...)
			if k, reason := tb.fetchDefault(t); k != nil || !strings.Contains(reason, c.reason) {
				t.Fatalf("after the rollback: key %x (version 1 is %x, 2 is %x), refusal %q; want %q", k, tb.keys["default"], v2, reason, c.reason)
			}
		})
	}
}

// TestRollbackAcrossRestart: a server started again knows the key states from the checkpoint
// file, which its predecessor appended to when it stopped, and refuses a rollback made while no
// server ran; a key deleted and created again with ppml key continues its numbering and is
// released.
func TestRollbackAcrossRestart(t *testing.T) {
	tb := newTestbed(t, anchored)
	ctx := context.Background()
	if _, err := tb.store.RotateKey(ctx, "default"); err != nil {
		t.Fatal(err)
	}
	restart := func() {
		tb.server.Shutdown(ctx) // signs a checkpoint, appended to the file
		srv, err := NewServer(tb.server.state.Load().cfg, tb.store, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		tb.serve(t, srv)
	}
	restart()
	tb.rollback(t, `UPDATE keys SET current_version = 1 WHERE name = 'default'`)
	restart()
	if k, reason := tb.fetchDefault(t); k != nil || !strings.Contains(reason, "reached version 2") {
		t.Fatalf("after the rollback and a restart: key %x, refusal %q", k, reason)
	}

	// The owner deletes the key and creates it again: version 3, which the server releases.
	tb.rollback(t, `UPDATE keys SET current_version = 2 WHERE name = 'default'`)
	if err := tb.store.DeleteKey(ctx, "default"); err != nil {
		t.Fatal(err)
	}
	restart()
	k, err := tb.store.CreateKey(ctx, "default")
	if err != nil || k.Version != 3 {
		t.Fatalf("recreate: %+v, %v", k, err)
	}
	want, _, _ := tb.store.Key(ctx, "default", store.Current)
	if got, reason := tb.fetchDefault(t); !bytes.Equal(got, want) {
		t.Fatalf("the key created again is refused: %q", reason)
	}
}
