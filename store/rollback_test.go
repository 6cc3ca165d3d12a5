package store

import (
	"crypto"
	"errors"
	"testing"
)

// TestKeyRollback rolls a key back in the database, as someone who can write it but has no master
// key could, in each way the store allows, and checks that VerifyAudit names the key against the
// signed checkpoint or the audit record of the change that the store no longer reflects.
func TestKeyRollback(t *testing.T) { forEachBackend(t, testKeyRollback) }

func testKeyRollback(t *testing.T, b backend) {
	key := testSigner(t)
	keys := []crypto.PublicKey{key.Public()}
	for _, c := range []struct {
		name   string
		signed bool     // a checkpoint signs the state before the rollback
		tamper []string // run after: key "k" rotated to version 2, key "gone" deleted at version 1
		store  *KeyState
		want   KeyState
		source string
	}{
		{"current version set back", true, []string{`UPDATE keys SET current_version = 1 WHERE name = 'k'`},
			&KeyState{Version: 1}, KeyState{Version: 2}, "checkpoint 1"},
		{"newer version deleted", true, []string{`DELETE FROM key_versions WHERE name = 'k' AND version = 2`},
			&KeyState{Version: 1}, KeyState{Version: 2}, "checkpoint 1"},
		{"key deleted", true, []string{`DELETE FROM key_versions WHERE name = 'k'`, `DELETE FROM keys WHERE name = 'k'`},
			nil, KeyState{Version: 2}, "checkpoint 1"},
		// The deleted key's rows, saved before, put back: the release of a key its owner deleted.
		{"deleted key restored", true, []string{`DELETE FROM deleted_keys`, `INSERT INTO keys SELECT * FROM saved_keys`,
			`INSERT INTO key_versions SELECT * FROM saved_versions`},
			&KeyState{Version: 1}, KeyState{Version: 1, Deleted: true}, "checkpoint 1"},
		// With no checkpoint after the change, its audit record says where the key is.
		{"rolled back before a checkpoint", false, []string{`UPDATE keys SET current_version = 1 WHERE name = 'k'`},
			&KeyState{Version: 1}, KeyState{Version: 2}, "audit record 4"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, dsn := newStore(t, b)
			for _, name := range []string{"k", "gone"} {
				if _, err := s.CreateKey(ctx, name); err != nil {
					t.Fatal(err)
				}
			}
			db := rawDB(t, b, dsn)
			exec(t, db, `CREATE TABLE saved_keys AS SELECT * FROM keys WHERE name = 'gone'`)
			exec(t, db, `CREATE TABLE saved_versions AS SELECT * FROM key_versions WHERE name = 'gone'`)
			if err := s.DeleteKey(ctx, "gone"); err != nil {
				t.Fatal(err)
			}
			if _, err := s.RotateKey(ctx, "k"); err != nil {
				t.Fatal(err)
			}
			if c.signed {
				if _, err := SignCheckpoint(ctx, s, key, nil); err != nil {
					t.Fatal(err)
				}
			}
			if rep, err := VerifyAudit(ctx, s, keys, nil); err != nil || rep.Keys != 2 {
				t.Fatalf("before: %+v, %v", rep, err)
			}
			for _, q := range c.tamper {
				exec(t, db, q)
			}
			_, err := VerifyAudit(ctx, s, keys, nil)
			var re *RollbackError
			if !errors.As(err, &re) || (re.Store == nil) != (c.store == nil) || c.store != nil && *re.Store != *c.store ||
				re.Want != c.want || len(re.Source) < len(c.source) || re.Source[:len(c.source)] != c.source {
				t.Fatalf("VerifyAudit: %v; want the rollback of a key from %v to %v, said by %s", err, c.want, c.store, c.source)
			}
		})
	}
}

// TestKeyVersionMissing: a current version whose record was deleted is not silently replaced by
// another.
func TestKeyVersionMissing(t *testing.T) { forEachBackend(t, testKeyVersionMissing) }

func testKeyVersionMissing(t *testing.T, b backend) {
	s, dsn := newStore(t, b)
	if _, err := s.CreateKey(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RotateKey(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if _, v, err := s.Key(ctx, "k", Current); err != nil || v != 2 {
		t.Fatalf("Key: version %d, %v", v, err)
	}
	exec(t, rawDB(t, b, dsn), `DELETE FROM key_versions WHERE name = 'k' AND version = 2`)
	_, _, err := s.Key(ctx, "k", Current)
	wantErr(t, err, ErrVersionMissing)
	if got, err := s.KeyVersions(ctx); err != nil || got["k"] != (KeyState{Version: 1}) {
		t.Errorf("KeyVersions = %v, %v", got, err)
	}
}

// TestSignCheckpointSeen: a checkpoint signs the versions its signer saw, not lower ones that the
// store was rolled back to before it.
func TestSignCheckpointSeen(t *testing.T) { forEachBackend(t, testSignCheckpointSeen) }

func testSignCheckpointSeen(t *testing.T, b backend) {
	s, _ := newStore(t, b)
	if _, err := s.CreateKey(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	c, err := SignCheckpoint(ctx, s, testSigner(t), KeyStates{"k": {Version: 4}, "other": {Version: 2, Deleted: true}})
	if err != nil {
		t.Fatal(err)
	}
	want := KeyStates{"k": {Version: 4}, "other": {Version: 2, Deleted: true}}
	var stored []Checkpoint
	for c, err := range s.Checkpoints(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		stored = append(stored, c)
	}
	if len(c.Keys) != 2 || c.Keys["k"] != want["k"] || c.Keys["other"] != want["other"] || len(stored) != 1 || len(stored[0].Keys) != 2 || stored[0].Keys["k"] != want["k"] {
		t.Errorf("checkpoint keys %v, stored %+v; want %v", c.Keys, stored, want)
	}
}

func TestKeyStateOrder(t *testing.T) {
	order := []KeyState{{Version: 1}, {Version: 1, Deleted: true}, {Version: 2}, {Version: 3, Deleted: true}}
	for i, a := range order {
		for j, b := range order {
			if a.Before(b) != (i < j) {
				t.Errorf("%v before %v is %v", a, b, a.Before(b))
			}
		}
	}
	m := KeyStates{"a": {Version: 2}, "b": {Version: 1}}
	m.Raise(KeyStates{"a": {Version: 1}, "b": {Version: 1, Deleted: true}, "c": {Version: 5}})
	if m["a"] != (KeyState{Version: 2}) || m["b"] != (KeyState{Version: 1, Deleted: true}) || m["c"] != (KeyState{Version: 5}) {
		t.Errorf("Raise: %v", m)
	}
}

// TestNoVersionReused: after a rollback, the owner's next change of the key (a rotation, or a
// deletion and a new key of the name) takes a version number that no earlier version had, so that
// the earlier version, if its record is put back, cannot pass for the new one.
func TestNoVersionReused(t *testing.T) { forEachBackend(t, testNoVersionReused) }

func testNoVersionReused(t *testing.T, b backend) {
	s, dsn := newStore(t, b)
	db := rawDB(t, b, dsn)
	for _, name := range []string{"rotated", "recreated"} {
		if _, err := s.CreateKey(ctx, name); err != nil {
			t.Fatal(err)
		}
		if _, err := s.RotateKey(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	exec(t, db, `DELETE FROM key_versions WHERE version = 2`)
	exec(t, db, `UPDATE keys SET current_version = 1`)
	if k, err := s.RotateKey(ctx, "rotated"); err != nil || k.Version != 3 {
		t.Errorf("rotate after the rollback: %+v, %v; want version 3", k, err)
	}
	if err := s.DeleteKey(ctx, "recreated"); err != nil {
		t.Fatal(err)
	}
	exec(t, db, `DELETE FROM deleted_keys`) // the tombstone too: the audit records still count
	if k, err := s.CreateKey(ctx, "recreated"); err != nil || k.Version != 3 {
		t.Errorf("create after the rollback and a deletion: %+v, %v; want version 3", k, err)
	}
}
