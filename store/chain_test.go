package store

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestCanonicalEncoding checks the record hash against the encoding that chain.go documents,
// spelled out byte by byte here.
func TestCanonicalEncoding(t *testing.T) {
	svn := uint16(0x0102)
	r := AuditRecord{ID: 7, Time: time.Unix(0, 0x0102030405060708), Peer: "p", ISVSVN: &svn,
		RTMRs: []string{"ab"}, Debug: true, Keys: []string{"k", "l"}, Decision: Deny, Reason: "no"}
	prev := sha256.Sum256([]byte("previous"))
	enc := "ppml audit record v1\x00" + string(prev[:]) +
		"\x00\x00\x00\x00\x00\x00\x00\x07" + // id
		"\x01\x02\x03\x04\x05\x06\x07\x08" + // time
		"\x00\x00\x00\x01p" + // peer
		strings.Repeat("\x00\x00\x00\x00", 4) + // tee, platform, mrenclave, mrsigner
		"\x00" + "\x01\x01\x02" + // isv_prod_id absent, isv_svn
		"\x00\x00\x00\x00" + // mrtd
		"\x00\x00\x00\x01" + "\x00\x00\x00\x02ab" + // rtmrs
		"\x00\x00\x00\x00\x00\x00\x00\x00" + // measurement, tcb_status
		"\x01" + // debug
		"\x00\x00\x00\x00" + // workload
		"\x00\x00\x00\x02" + "\x00\x00\x00\x01k" + "\x00\x00\x00\x01l" + // keys
		"\x00\x00\x00\x04deny" + "\x00\x00\x00\x02no"
	want := sha256.Sum256([]byte(enc))
	if got := r.chainHash(prev[:]); hex.EncodeToString(got) != hex.EncodeToString(want[:]) {
		t.Errorf("record hash %x, want %x", got, want)
	}
	// An absent list encodes as an empty one; any field changes the hash.
	empty := r
	empty.RTMRs, r.RTMRs = nil, []string{}
	if hex.EncodeToString(empty.chainHash(prev[:])) != hex.EncodeToString(r.chainHash(prev[:])) {
		t.Error("an absent list and an empty one hash differently")
	}
	other := r
	other.Keys = []string{"kl"}
	if hex.EncodeToString(other.chainHash(prev[:])) == hex.EncodeToString(r.chainHash(prev[:])) {
		t.Error("keys [k l] and [kl] hash alike")
	}

	// A record with a manifest, GPUs or what its TCB status rests on is encoded in version 2:
	// version 1's fields under the label v2, then those.
	v2 := r
	v2.RTMRs = []string{"ab"}
	v2.AdvisoryIDs = []string{"A"}
	v2.TCBDate = new(time.Unix(0, 0x1112131415161718))
	v2.TCBEvaluationDataNumber = 18
	v2.QEStatus = "Q"
	v2.TDXModule = &TDXModule{ID: "T", ISVSVN: 4, Status: "S"}
	enc = "ppml audit record v2\x00" + enc[len("ppml audit record v1\x00"):] +
		"\x00\x00\x00\x00" + // manifest
		"\x00\x00\x00\x04null" + // gpus
		"\x00\x00\x00\x01" + "\x00\x00\x00\x01A" + // advisory_ids
		"\x01\x11\x12\x13\x14\x15\x16\x17\x18" + // tcb_date
		"\x00\x00\x00\x00\x00\x00\x00\x12" + // tcb_evaluation_data_number
		"\x00\x00\x00\x01Q" + // qe_status
		"\x01" + "\x00\x00\x00\x01T" + "\x04" + "\x00\x00\x00\x01S" // tdx_module
	want = sha256.Sum256([]byte(enc))
	if got := v2.chainHash(prev[:]); hex.EncodeToString(got) != hex.EncodeToString(want[:]) {
		t.Errorf("version 2 record hash %x, want %x", got, want)
	}
	// Each of them alone makes a version 2 record.
	for name, f := range map[string]func(*AuditRecord){
		"advisory_ids":               func(r *AuditRecord) { r.AdvisoryIDs = []string{"A"} },
		"tcb_date":                   func(r *AuditRecord) { r.TCBDate = new(time.Unix(0, 0)) },
		"tcb_evaluation_data_number": func(r *AuditRecord) { r.TCBEvaluationDataNumber = 1 },
		"qe_status":                  func(r *AuditRecord) { r.QEStatus = "UpToDate" },
		"tdx_module":                 func(r *AuditRecord) { r.TDXModule = &TDXModule{} },
		"manifest":                   func(r *AuditRecord) { r.Manifest = "ab" },
		"gpus":                       func(r *AuditRecord) { r.GPUs = []GPURecord{{Arch: "Hopper"}} },
	} {
		one := r
		f(&one)
		if enc := one.canonical(nil, prev[:]); !strings.HasPrefix(string(enc), recordLabelV2) {
			t.Errorf("a record with %s is encoded as %q", name, enc[:len(recordLabelV2)])
		}
	}

	// A key's change is encoded in version 3: version 2's fields under the label v3, then the
	// key's version.
	v3 := v2
	v3.KeyVersion = 0x0102
	enc = "ppml audit record v3\x00" + enc[len("ppml audit record v2\x00"):] + "\x00\x00\x00\x00\x00\x00\x01\x02"
	want = sha256.Sum256([]byte(enc))
	if got := v3.chainHash(prev[:]); hex.EncodeToString(got) != hex.EncodeToString(want[:]) {
		t.Errorf("version 3 record hash %x, want %x", got, want)
	}
}

// TestCheckpointMessage checks the signed message of a checkpoint with keys against the encoding
// that chain.go documents, and that one without keys keeps version 1's.
func TestCheckpointMessage(t *testing.T) {
	hash := sha256.Sum256([]byte("head"))
	c := Checkpoint{RecordID: 7, Time: time.Unix(0, 0x0102030405060708)}
	v1 := "ppml audit checkpoint v1\x00" + "\x00\x00\x00\x00\x00\x00\x00\x07" + string(hash[:]) + "\x01\x02\x03\x04\x05\x06\x07\x08"
	if got := string(checkpointMessage(&c, hash[:])); got != v1 {
		t.Errorf("checkpoint message %q, want %q", got, v1)
	}
	c.Keys = KeyStates{"b": {Version: 2}, "a": {Version: 3, Deleted: true}}
	v2 := "ppml audit checkpoint v2\x00" + v1[len("ppml audit checkpoint v1\x00"):] + "\x00\x00\x00\x02" +
		"\x00\x00\x00\x01a" + "\x00\x00\x00\x00\x00\x00\x00\x03" + "\x01" +
		"\x00\x00\x00\x01b" + "\x00\x00\x00\x00\x00\x00\x00\x02" + "\x00"
	if got := string(checkpointMessage(&c, hash[:])); got != v2 {
		t.Errorf("checkpoint message %q, want %q", got, v2)
	}
}

// testSigner is the server's TLS key in the tests: ECDSA P-256, as ppml serve setup makes.
func testSigner(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// chainedStore returns a store holding n records and a checkpoint signed by key after the
// first m of them.
func chainedStore(t *testing.T, b backend, key crypto.Signer, n, m int) (Store, string) {
	t.Helper()
	s, dsn := newStore(t, b)
	for i := range n {
		if i == m {
			if _, err := SignCheckpoint(ctx, s, key, nil); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.AppendAudit(ctx, sampleRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	return s, dsn
}

func TestChainVerify(t *testing.T) { forEachBackend(t, testChainVerify) }

func testChainVerify(t *testing.T, b backend) {
	key := testSigner(t)
	s, _ := newStore(t, b)
	if c, err := SignCheckpoint(ctx, s, key, nil); err != nil || c.ID != 0 {
		t.Fatalf("checkpoint of an empty log: %+v, %v", c, err)
	}
	s, _ = chainedStore(t, b, key, 10, 4)
	records := collect(t, s, AuditFilter{})
	for i, r := range records {
		prev := strings.Repeat("0", 64)
		if i > 0 {
			prev = records[i-1].Hash
		}
		if r.ID != int64(i+1) || r.PrevHash != prev || len(r.Hash) != 64 {
			t.Fatalf("record %d: ID %d, prev %s, hash %s", i, r.ID, r.PrevHash, r.Hash)
		}
	}
	if id, hash, err := s.AuditHead(ctx); err != nil || id != 10 || hash != records[9].Hash {
		t.Errorf("AuditHead = %d, %s, %v", id, hash, err)
	}
	rep, err := VerifyAudit(ctx, s, []crypto.PublicKey{key.Public()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Records != 10 || rep.Unchained != 0 || rep.Head != 10 || rep.Checkpoints != 1 || rep.Covered != 4 || rep.Unsigned != 6 {
		t.Errorf("report %+v", rep)
	}
	// A checkpoint by a key the verifier is not given does not count.
	var ce *ChainError
	if _, err := VerifyAudit(ctx, s, []crypto.PublicKey{testSigner(t).Public()}, nil); !errors.As(err, &ce) || ce.Checkpoint != 1 || !strings.Contains(err.Error(), "not the server's") {
		t.Errorf("checkpoint by an unknown key: %v", err)
	}
	// Ed25519 and RSA keys sign checkpoints as well.
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	for _, k := range []crypto.Signer{ed, rsaKey} {
		if _, err := SignCheckpoint(ctx, s, k, nil); err != nil {
			t.Fatal(err)
		}
	}
	if rep, err := VerifyAudit(ctx, s, []crypto.PublicKey{key.Public(), ed.Public(), rsaKey.Public()}, nil); err != nil || rep.Checkpoints != 3 || rep.Unsigned != 0 {
		t.Errorf("with three signers: %+v, %v", rep, err)
	}
}

// TestChainTamper changes, deletes and inserts records and checkpoints directly in the
// database, as someone with access to it could, and checks that VerifyAudit names the first
// record that no longer fits.
func TestChainTamper(t *testing.T) { forEachBackend(t, testChainTamper) }

func testChainTamper(t *testing.T, b backend) {
	key := testSigner(t)
	for _, c := range []struct {
		name       string
		tamper     []string // statements run on the database
		record     int64
		checkpoint int64
		reason     string
	}{
		{"changed", []string{`UPDATE audit SET reason = 'fine' WHERE id = 4`}, 4, 0, "does not match its hash"},
		{"manifest named", []string{`UPDATE audit SET manifest = '` + strings.Repeat("ab", 32) + `' WHERE id = 5`}, 5, 0, "does not match its hash"},
		{"manifest changed", []string{`UPDATE audit SET manifest = '` + strings.Repeat("ab", 32) + `' WHERE id = 6`}, 6, 0, "does not match its hash"},
		{"changed decision", []string{`UPDATE audit SET decision = 'allow', reason = '' WHERE id = 8`}, 8, 0, "does not match its hash"},
		{"GPU claims changed", []string{`UPDATE audit SET gpus = '[{"measurements":"match"}]' WHERE id = 5`}, 5, 0, "does not match its hash"},
		{"GPU claims added", []string{`UPDATE audit SET gpus = '[{"measurements":"match"}]' WHERE id = 6`}, 6, 0, "does not match its hash"},
		{"rehashed", []string{`UPDATE audit SET reason = 'fine', hash = (SELECT hash FROM audit WHERE id = 3) WHERE id = 4`}, 4, 0, "does not match its hash"},
		{"deleted", []string{`DELETE FROM audit WHERE id = 6`}, 7, 0, "records 6 to 6 were deleted"},
		{"first deleted", []string{`DELETE FROM audit WHERE id = 1`}, 2, 0, "the records before it were deleted"},
		{"tail deleted", []string{`DELETE FROM audit WHERE id >= 3`}, 4, 1, "which is missing"},
		{"inserted without hash", []string{`INSERT INTO audit (id, time_ns, peer, tee, platform, mrenclave, mrsigner, mrtd, rtmrs,
			measurement, tcb_status, debug, workload, keys, decision, reason)
			SELECT 100, time_ns, peer, tee, platform, mrenclave, mrsigner, mrtd, rtmrs, measurement, tcb_status, debug,
			workload, keys, decision, reason FROM audit WHERE id = 2`}, 100, 0, "no hash"},
		{"inserted copy", []string{`INSERT INTO audit (` + auditColumns + `) SELECT 11, time_ns, peer, tee, platform, mrenclave,
			mrsigner, isv_prod_id, isv_svn, mrtd, rtmrs, measurement, tcb_status, debug, workload, keys, decision, reason,
			prev_hash, hash, gpus, manifest, advisory_ids, tcb_date_ns, tcb_evaluation_data_number, qe_status, tdx_module_id, tdx_module_svn,
			tdx_module_status, key_version FROM audit WHERE id = 2`}, 11, 0, "predecessor hash"},
		// Record 4 is a TDX record, whose hash covers what its TCB status rests on (version 2):
		// neither a change nor its removal (which would make it a version 1 record) goes unseen.
		{"TCB date changed", []string{`UPDATE audit SET tcb_date_ns = tcb_date_ns + 86400000000000 WHERE id = 4`}, 4, 0, "does not match its hash"},
		{"advisory removed", []string{`UPDATE audit SET advisory_ids = '["INTEL-SA-01036"]' WHERE id = 4`}, 4, 0, "does not match its hash"},
		{"module status changed", []string{`UPDATE audit SET tdx_module_status = 'UpToDate' WHERE id = 4`}, 4, 0, "does not match its hash"},
		{"evaluation number changed", []string{`UPDATE audit SET tcb_evaluation_data_number = 19 WHERE id = 6`}, 6, 0, "does not match its hash"},
		{"TCB claims removed", []string{`UPDATE audit SET advisory_ids = 'null', tcb_date_ns = NULL, tcb_evaluation_data_number = 0,
			qe_status = '', tdx_module_id = '', tdx_module_svn = NULL, tdx_module_status = '' WHERE id = 8`}, 8, 0, "does not match its hash"},
		{"hash removed", []string{`UPDATE audit SET prev_hash = NULL, hash = NULL WHERE id = 5`}, 5, 0, "no hash"},
		{"checkpoint altered", []string{`UPDATE audit_checkpoints SET record_id = 5`}, 0, 1, "signature does not verify"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, dsn := chainedStore(t, b, key, 10, 4)
			if _, err := VerifyAudit(ctx, s, []crypto.PublicKey{key.Public()}, nil); err != nil {
				t.Fatalf("before: %v", err)
			}
			db := rawDB(t, b, dsn)
			for _, q := range c.tamper {
				exec(t, db, q)
			}
			_, err := VerifyAudit(ctx, s, []crypto.PublicKey{key.Public()}, nil)
			var ce *ChainError
			if !errors.As(err, &ce) || ce.Record != c.record || ce.Checkpoint != c.checkpoint || !strings.Contains(ce.Reason, c.reason) {
				t.Errorf("VerifyAudit: %v; want record %d, checkpoint %d, %q", err, c.record, c.checkpoint, c.reason)
			}
		})
	}

	// Rewriting the chain from a changed record on, with correct hashes, breaks the checkpoint.
	s, dsn := chainedStore(t, b, key, 10, 4)
	rewrite(t, rawDB(t, b, dsn), 2, "nothing happened")
	_, err := VerifyAudit(ctx, s, []crypto.PublicKey{key.Public()}, nil)
	if ce := (*ChainError)(nil); !errors.As(err, &ce) || ce.Record != 4 || ce.Checkpoint != 1 || !strings.Contains(err.Error(), "rewritten") {
		t.Errorf("rewritten chain: %v", err)
	}
}

// rewrite changes the reason of record id and recomputes the hashes of the chain from it on,
// as someone who knows the encoding could.
func rewrite(t *testing.T, db *sql.DB, id int64, reason string) {
	t.Helper()
	rows, err := db.Query(`SELECT `+auditColumns+` FROM audit WHERE id >= $1 ORDER BY id`, id-1)
	if err != nil {
		t.Fatal(err)
	}
	var rs []AuditRecord
	for rows.Next() {
		r, err := scanAudit(rows.Scan)
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, r)
	}
	rows.Close()
	prev, _ := hex.DecodeString(rs[0].Hash)
	for _, r := range rs[1:] {
		if r.ID == id {
			r.Reason = reason
		}
		hash := r.chainHash(prev)
		exec(t, db, `UPDATE audit SET reason = $1, prev_hash = $2, hash = $3 WHERE id = $4`, r.Reason, prev, hash, r.ID)
		prev = hash
	}
}

// TestChainMigration: a SQLite store made before the chain keeps its records, unchained; the
// chain starts at the first record after the migration.
func TestChainMigration(t *testing.T) {
	dsn := sqliteBackend.newDSN(t)
	seal, _ := newSealer(masterKey(1))
	w := rawDB(t, sqliteBackend, dsn)
	// A store at schema version 1, as ppml made them before the chain.
	exec(t, w, sqliteMigrations[0])
	exec(t, w, `CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_ns INTEGER NOT NULL)`)
	exec(t, w, `INSERT INTO schema_version VALUES (1, 0)`)
	exec(t, w, `INSERT INTO meta (name, value) VALUES ($1, $2)`, checkName, seal.checkValue())
	for i := range 3 {
		exec(t, w, `INSERT INTO audit (time_ns, peer, tee, platform, mrenclave, mrsigner, mrtd, rtmrs, measurement,
			tcb_status, debug, workload, keys, decision, reason) VALUES ($1, $2, '', '', '', '', '', 'null', '', '', 0, '', 'null', 'deny', 'old')`,
			int64(i), fmt.Sprintf("old %d", i))
	}

	s := openAt(t, dsn, masterKey(1))
	defer s.Close()
	key := testSigner(t)
	for i := range 2 {
		if _, err := s.AppendAudit(ctx, sampleRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := SignCheckpoint(ctx, s, key, nil); err != nil {
		t.Fatal(err)
	}
	records := collect(t, s, AuditFilter{})
	if len(records) != 5 || records[2].Hash != "" || records[2].Peer != "old 2" || records[3].ID != 4 || records[3].PrevHash != strings.Repeat("0", 64) {
		t.Fatalf("after migration: %+v", records)
	}
	rep, err := VerifyAudit(ctx, s, []crypto.PublicKey{key.Public()}, nil)
	if err != nil || rep.Unchained != 3 || rep.Records != 5 || rep.Covered != 5 {
		t.Errorf("VerifyAudit: %+v, %v", rep, err)
	}
}

// TestChainVersion1Records: records chained before the audit table had the columns of record
// version 2 keep verifying after the migration that adds them, and the chain goes on after them
// with version 2 records.
func TestChainVersion1Records(t *testing.T) { forEachBackend(t, testChainVersion1Records) }

func testChainVersion1Records(t *testing.T, b backend) {
	// A store at the schema version before auditTCBMigration, as ppml made them before record
	// version 2, with three records as that ppml wrote them: the columns of then, with the hashes
	// of version 1.
	dsn, w := storeAtSchema(t, b, func(migrations []string) int { return slices.Index(migrations, auditTCBMigration) })
	var batch []*pendingRecord
	for i := range 3 {
		r := sampleRecord(i)
		r.AdvisoryIDs, r.TCBDate, r.TCBEvaluationDataNumber, r.QEStatus, r.TDXModule = nil, nil, 0, "", nil
		r.Manifest, r.GPUs = "", nil
		batch = append(batch, &pendingRecord{r: r})
	}
	insertOld(t, w, batch, 20)

	s := openAt(t, dsn, masterKey(1))
	defer s.Close()
	key := testSigner(t)
	if _, err := SignCheckpoint(ctx, s, key, nil); err != nil {
		t.Fatal(err)
	}
	next := sampleRecord(3)
	if _, err := s.AppendAudit(ctx, next); err != nil {
		t.Fatal(err)
	}
	records := collect(t, s, AuditFilter{})
	if len(records) != 4 || records[1].TDXModule != nil || records[1].AdvisoryIDs != nil || records[3].TDXModule == nil || *records[3].TCBDate != *next.TCBDate {
		t.Fatalf("after migration: %+v", records)
	}
	rep, err := VerifyAudit(ctx, s, []crypto.PublicKey{key.Public()}, nil)
	if err != nil || rep.Records != 4 || rep.Unchained != 0 || rep.Covered != 3 {
		t.Errorf("VerifyAudit: %+v, %v", rep, err)
	}
}

// TestChainReplicas appends from three stores over one PostgreSQL database at once: the chain
// stays one total order.
func TestChainReplicas(t *testing.T) {
	dsn := postgresBackend.newDSN(t)
	key := testSigner(t)
	var stores []Store
	for range 3 {
		s := openAt(t, dsn, masterKey(1))
		defer s.Close()
		stores = append(stores, s)
	}
	const perWriter = 50
	var wg sync.WaitGroup
	for i, s := range stores {
		for w := range 4 {
			wg.Go(func() {
				for j := range perWriter {
					r := sampleRecord(j)
					r.Peer = fmt.Sprintf("replica %d writer %d", i, w)
					if _, err := s.AppendAudit(ctx, r); err != nil {
						t.Error(err)
						return
					}
					if j%10 == 0 {
						if _, err := SignCheckpoint(ctx, s, key, nil); err != nil {
							t.Error(err)
						}
					}
				}
			})
		}
	}
	wg.Wait()
	rep, err := VerifyAudit(ctx, stores[0], []crypto.PublicKey{key.Public()}, nil)
	if err != nil || rep.Records != 3*4*perWriter || rep.Head != rep.Records || rep.Checkpoints != 3*4*perWriter/10 {
		t.Errorf("VerifyAudit: %+v, %v", rep, err)
	}
}

// TestKeyHistoryMigration: a store made before key changes were records (its records of versions
// 1 and 2, its checkpoint without keys, its keys) keeps verifying after the migration that lets
// them be (in SQLite, the audit table made again), and the chain goes on with key changes.
func TestKeyHistoryMigration(t *testing.T) { forEachBackend(t, testKeyHistoryMigration) }

func testKeyHistoryMigration(t *testing.T, b backend) {
	dsn, w := storeAtSchema(t, b, func(migrations []string) int { return len(migrations) - 1 })
	seal, _ := newSealer(masterKey(1))
	exec(t, w, `INSERT INTO keys (name, current_version, created_ns) VALUES ('default', 1, 0)`)
	exec(t, w, `INSERT INTO key_versions (name, version, created_ns, sealed) VALUES ('default', 1, 0, $1)`, seal.seal("default", 1, make([]byte, KeySize)))
	var batch []*pendingRecord
	for i := range 3 {
		batch = append(batch, &pendingRecord{r: sampleRecord(i)})
	}
	insertOld(t, w, batch, 29)
	key := testSigner(t)
	old := Checkpoint{Time: time.Unix(1, 0).UTC(), RecordID: 3, RecordHash: batch[2].r.Hash}
	old.Signer, _ = KeyID(key.Public())
	head, _ := hex.DecodeString(old.RecordHash)
	digest := sha256.Sum256(checkpointMessage(&old, head))
	old.Signature, _ = ecdsa.SignASN1(rand.Reader, key, digest[:])
	args, _ := checkpointArgs(&old)
	exec(t, w, `INSERT INTO audit_checkpoints (time_ns, record_id, record_hash, signer, signature) VALUES ($1, $2, $3, $4, $5)`, args[:5]...)

	s := openAt(t, dsn, masterKey(1))
	defer s.Close()
	if _, err := s.RotateKey(ctx, "default"); err != nil {
		t.Fatal(err)
	}
	if _, err := SignCheckpoint(ctx, s, key, nil); err != nil {
		t.Fatal(err)
	}
	records := collect(t, s, AuditFilter{})
	if len(records) != 4 || !reflect.DeepEqual(content(records[:3]), content(recordsOf(batch))) || records[3].Decision != KeyRotate || records[3].ID != 4 {
		t.Fatalf("after migration: %+v", records)
	}
	rep, err := VerifyAudit(ctx, s, []crypto.PublicKey{key.Public()}, nil)
	if err != nil || rep.Records != 4 || rep.Checkpoints != 2 || rep.Covered != 4 || rep.Keys != 1 {
		t.Errorf("VerifyAudit: %+v, %v", rep, err)
	}
}

// storeAtSchema makes a store of backend b at the schema version that version returns, given
// the backend's migrations, as an earlier ppml made it, and returns its data source name and a
// connection to its database.
func storeAtSchema(t *testing.T, b backend, version func([]string) int) (string, *sql.DB) {
	dsn := b.newDSN(t)
	w := rawDB(t, b, dsn)
	migrations := map[string][]string{"sqlite": sqliteMigrations, "postgres": postgresMigrations}[b.name]
	exec(t, w, `CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_ns BIGINT NOT NULL)`)
	for v, m := range migrations[:version(migrations)] {
		exec(t, w, m)
		exec(t, w, `INSERT INTO schema_version VALUES ($1, 0)`, v+1)
	}
	seal, _ := newSealer(masterKey(1))
	exec(t, w, `INSERT INTO meta (name, value) VALUES ($1, $2)`, checkName, seal.checkValue())
	return dsn, w
}

// insertOld chains batch and inserts its records into w's audit table with the first n columns
// alone, as an earlier ppml wrote them.
func insertOld(t *testing.T, w *sql.DB, batch []*pendingRecord, n int) {
	chain(0, nil, batch)
	placeholders := make([]string, n)
	for i := range placeholders {
		placeholders[i] = fmt.Sprintf("$%d", i+1)
	}
	for _, p := range batch {
		exec(t, w, `INSERT INTO audit (`+strings.Join(strings.Split(auditColumns, ",")[:n], ",")+`) VALUES (`+
			strings.Join(placeholders, ", ")+`)`, auditArgs(&p.r)[:n]...)
	}
}

// recordsOf returns the records of batch.
func recordsOf(batch []*pendingRecord) []AuditRecord {
	var rs []AuditRecord
	for _, p := range batch {
		rs = append(rs, p.r)
	}
	return rs
}
