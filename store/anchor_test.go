package store

import (
	"crypto"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckpointFile deletes checkpoints from the database and rewrites the records they
// covered, as someone with access to it could: the database alone still verifies (its later
// records merely unsigned), the checkpoint file names the first checkpoint missing.
func TestCheckpointFile(t *testing.T) { forEachBackend(t, testCheckpointFile) }

func testCheckpointFile(t *testing.T, b backend) {
	key := testSigner(t)
	keys := []crypto.PublicKey{key.Public()}
	for _, c := range []struct {
		name       string
		tamper     []string
		rewriteAt  int64
		checkpoint int64
	}{
		{"newest checkpoint deleted", []string{`DELETE FROM audit_checkpoints WHERE id = 2`}, 6, 2},
		{"all checkpoints deleted", []string{`DELETE FROM audit_checkpoints`}, 2, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, dsn := chainedStore(t, b, key, 10, 4)
			if _, err := SignCheckpoint(ctx, s, key, nil); err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(t.TempDir(), "checkpoints.jsonl")
			for cp, err := range s.Checkpoints(ctx) {
				if err != nil {
					t.Fatal(err)
				}
				if err := AppendCheckpoint(file, cp); err != nil {
					t.Fatal(err)
				}
			}
			anchored := readCheckpointFile(t, file)
			if rep, err := VerifyAudit(ctx, s, keys, anchored); err != nil || rep.Anchored != 2 || rep.Covered != 10 {
				t.Fatalf("before: %+v, %v", rep, err)
			}
			db := rawDB(t, b, dsn)
			for _, q := range c.tamper {
				exec(t, db, q)
			}
			rewrite(t, db, c.rewriteAt, "nothing happened")
			if _, err := VerifyAudit(ctx, s, keys, nil); err != nil {
				t.Fatalf("the database alone no longer verifies, which the test means to show it does: %v", err)
			}
			_, err := VerifyAudit(ctx, s, keys, anchored)
			var ce *ChainError
			if !errors.As(err, &ce) || ce.Checkpoint != c.checkpoint || !strings.Contains(ce.Reason, "in the checkpoint file") || !strings.Contains(ce.Reason, "not in the database") {
				t.Errorf("with the checkpoint file: %v; want checkpoint %d missing", err, c.checkpoint)
			}
		})
	}
}

func readCheckpointFile(t *testing.T, name string) []Checkpoint {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cs, err := ReadCheckpoints(f)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// TestReadCheckpoints: a torn last line is left out; anything else that is no checkpoint is an
// error naming its line.
func TestReadCheckpoints(t *testing.T) {
	line := `{"id":1,"time":"2026-01-01T00:00:00Z","record_id":4,"record_hash":"` + strings.Repeat("ab", 32) + `","signer":"x","signature":"AQID"}`
	for _, c := range []struct {
		file string
		n    int
		err  string
	}{
		{"", 0, ""},
		{line + "\n" + line + "\n", 2, ""},
		{line + "\n" + line[:20], 1, ""},
		{line + "\n{}\n", 0, "line 2: not a checkpoint: no record_id or signature"},
		{"garbage\n", 0, "line 1: not a checkpoint"},
		{strings.Replace(line, `"id"`, `"idx"`, 1) + "\n", 0, "line 1: not a checkpoint"},
	} {
		cs, err := ReadCheckpoints(strings.NewReader(c.file))
		if c.err == "" && (err != nil || len(cs) != c.n) || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%q: %d checkpoints, %v; want %d, %q", c.file, len(cs), err, c.n, c.err)
		}
	}
}

func FuzzReadCheckpoints(f *testing.F) {
	f.Add([]byte(`{"id":1,"time":"2026-01-01T00:00:00Z","record_id":4,"record_hash":"ab","signer":"x","signature":"AQID"}` + "\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		cs, err := ReadCheckpoints(strings.NewReader(string(b)))
		for _, c := range cs {
			if err == nil && (c.RecordID <= 0 || len(c.Signature) == 0) {
				t.Fatalf("accepted %+v", c)
			}
		}
	})
}
