package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	_ "modernc.org/sqlite" // the pure-Go SQLite driver, registered as "sqlite"
)

// migrations are the schema changes, in order: migrations[i] makes schema version i+1. Applied
// versions are recorded in schema_version; a released migration is never edited, only followed.
var migrations = []string{`
CREATE TABLE meta (
	name  TEXT PRIMARY KEY,
	value BLOB NOT NULL
);
CREATE TABLE keys (
	name            TEXT PRIMARY KEY,
	current_version INTEGER NOT NULL CHECK (current_version >= 1),
	created_ns      INTEGER NOT NULL
);
CREATE TABLE key_versions (
	name       TEXT NOT NULL REFERENCES keys (name),
	version    INTEGER NOT NULL CHECK (version >= 1),
	created_ns INTEGER NOT NULL,
	sealed     BLOB NOT NULL,
	PRIMARY KEY (name, version)
);
CREATE TABLE audit (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	time_ns     INTEGER NOT NULL,
	peer        TEXT NOT NULL,
	tee         TEXT NOT NULL,
	platform    TEXT NOT NULL,
	mrenclave   TEXT NOT NULL,
	mrsigner    TEXT NOT NULL,
	isv_prod_id INTEGER,
	isv_svn     INTEGER,
	mrtd        TEXT NOT NULL,
	rtmrs       TEXT NOT NULL, -- JSON: an array of hex strings, or null
	measurement TEXT NOT NULL,
	tcb_status  TEXT NOT NULL,
	debug       INTEGER NOT NULL,
	workload    TEXT NOT NULL,
	keys        TEXT NOT NULL, -- JSON: an array of key names, or null
	decision    TEXT NOT NULL CHECK (decision IN ('allow', 'deny')),
	reason      TEXT NOT NULL
);
CREATE INDEX audit_time ON audit (time_ns);
`, `
ALTER TABLE audit ADD COLUMN manifest TEXT NOT NULL DEFAULT '';
`}

// Connection settings. Writes go through one connection, so that writers queue in Go rather
// than sleep in SQLite's busy handler; the busy timeout covers other processes, such as a
// `ppml key` command run while the server is up. Transactions begin IMMEDIATE so that they
// take the write lock at once instead of failing to upgrade to it. synchronous=FULL makes a
// commit durable, power loss included; secure_delete overwrites deleted key records. The write
// connection never checkpoints (wal_autocheckpoint(0)): a connection of its own does, every
// checkpointEvery, so that no commit on the way to a key release waits for a checkpoint's copying
// and fsync.
const (
	commonParams     = "_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)&_pragma=secure_delete(1)"
	writeParams      = commonParams + "&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=wal_autocheckpoint(0)&_txlock=immediate"
	readParams       = commonParams + "&_pragma=query_only(1)"
	checkpointParams = commonParams + "&_pragma=synchronous(FULL)"
	checkpointEvery  = time.Second
)

const checkName = "master_key_check" // the meta row that holds the sealer's check value

// sqliteStore is the SQLite backend.
type sqliteStore struct {
	w, r *sql.DB // one connection for writes, several for reads
	ckpt *sql.DB // one connection for checkpoints
	seal *sealer
	// Statements of every key release, prepared once rather than on each call.
	currentKey, keyVersion, insertAudit *sql.Stmt
	stop                                context.CancelFunc // ends checkpoints
	done                                chan struct{}      // closed when checkpoints has returned

	queueMu  sync.Mutex
	queue    []*pendingRecord // audit records waiting for a commit
	commitMu sync.Mutex       // held by the caller that commits the queue
}

func openSQLite(path string, masterKey []byte) (*sqliteStore, error) {
	if path == "" {
		return nil, errors.New("sqlite store: no file named; use sqlite:PATH")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", path, err)
	}
	// Create the file first, so that it, and the -wal and -shm files that SQLite gives the
	// same mode, are for the owner only.
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	f.Close()
	seal, err := newSealer(masterKey)
	if err != nil {
		return nil, err
	}
	uri := func(params string) string {
		return (&url.URL{Scheme: "file", Path: abs, RawQuery: params}).String()
	}
	s := &sqliteStore{seal: seal}
	if s.w, err = sql.Open("sqlite", uri(writeParams)); err != nil {
		return nil, fmt.Errorf("store %s: %w", path, err)
	}
	s.w.SetMaxOpenConns(1)
	if err := s.migrate(context.Background()); err != nil {
		s.w.Close()
		return nil, fmt.Errorf("store %s: %w", path, err)
	}
	if s.r, err = sql.Open("sqlite", uri(readParams)); err != nil {
		s.w.Close()
		return nil, fmt.Errorf("store %s: %w", path, err)
	}
	readers := max(4, runtime.GOMAXPROCS(0))
	s.r.SetMaxOpenConns(readers)
	s.r.SetMaxIdleConns(readers)
	if s.ckpt, err = sql.Open("sqlite", uri(checkpointParams)); err != nil {
		s.Close()
		return nil, fmt.Errorf("store %s: %w", path, err)
	}
	s.ckpt.SetMaxOpenConns(1)
	if err := s.prepare(); err != nil {
		s.Close()
		return nil, fmt.Errorf("store %s: %w", path, err)
	}
	ctx, stop := context.WithCancel(context.Background())
	s.stop, s.done = stop, make(chan struct{})
	go s.checkpoints(ctx)
	return s, nil
}

// prepare prepares the statements that every key release runs.
func (s *sqliteStore) prepare() error {
	var err error
	if s.currentKey, err = s.r.Prepare(`SELECT v.version, v.sealed FROM keys k
		JOIN key_versions v ON v.name = k.name AND v.version = k.current_version
		WHERE k.name = ?`); err != nil {
		return err
	}
	if s.keyVersion, err = s.r.Prepare(`SELECT version, sealed FROM key_versions WHERE name = ? AND version = ?`); err != nil {
		return err
	}
	s.insertAudit, err = s.w.Prepare(`INSERT INTO audit (time_ns, peer, tee, platform,
		mrenclave, mrsigner, isv_prod_id, isv_svn, mrtd, rtmrs, measurement,
		tcb_status, debug, workload, keys, decision, reason, manifest)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	return err
}

// checkpoints copies what the WAL holds into the database file every checkpointEvery, without
// waiting for readers or holding up writers (a PASSIVE checkpoint), until Close. A checkpoint
// that fails is tried again at the next tick (a disk that fails it fails the commits too, which
// report it); the last connection to close checkpoints too.
func (s *sqliteStore) checkpoints(ctx context.Context) {
	defer close(s.done)
	t := time.NewTicker(checkpointEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.ckpt.ExecContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`)
		}
	}
}

// migrate brings the schema up to date and checks the master key, or, in a new store, records
// the check value for it.
func (s *sqliteStore) migrate(ctx context.Context) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (
		version    INTEGER PRIMARY KEY,
		applied_ns INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("schema: %w", err)
	}
	var version int
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&version); err != nil {
		return fmt.Errorf("schema: %w", err)
	}
	if version > len(migrations) {
		return fmt.Errorf("schema version %d is newer than this ppml knows (%d): upgrade ppml", version, len(migrations))
	}
	if version > 0 {
		var check []byte
		if err := tx.QueryRowContext(ctx, `SELECT value FROM meta WHERE name = ?`, checkName).Scan(&check); err != nil {
			return fmt.Errorf("master key check value: %w", err)
		}
		if err := s.seal.verify(check); err != nil {
			return err
		}
	}
	for v := version + 1; v <= len(migrations); v++ {
		if _, err := tx.ExecContext(ctx, migrations[v-1]); err != nil {
			return fmt.Errorf("schema version %d: %w", v, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version, applied_ns) VALUES (?, ?)`, v, time.Now().UnixNano()); err != nil {
			return fmt.Errorf("schema version %d: %w", v, err)
		}
	}
	if version == 0 {
		if _, err := tx.ExecContext(ctx, `INSERT INTO meta (name, value) VALUES (?, ?)`, checkName, s.seal.checkValue()); err != nil {
			return fmt.Errorf("master key check value: %w", err)
		}
	}
	return tx.Commit()
}

func (s *sqliteStore) AuditRef(id int64) string { return s.seal.auditRef(id) }

func (s *sqliteStore) Close() error {
	if s.stop != nil {
		s.stop()
		<-s.done
	}
	var errs []error
	for _, stmt := range []*sql.Stmt{s.currentKey, s.keyVersion, s.insertAudit} {
		if stmt != nil {
			errs = append(errs, stmt.Close())
		}
	}
	for _, db := range []*sql.DB{s.ckpt, s.r, s.w} {
		if db != nil {
			errs = append(errs, db.Close())
		}
	}
	return errors.Join(errs...)
}

func (s *sqliteStore) CreateKey(ctx context.Context, name string) (KeyInfo, error) {
	key := make([]byte, KeySize)
	defer clear(key)
	rand.Read(key) // never fails
	return s.insertKey(ctx, "create", name, key)
}

func (s *sqliteStore) ImportKey(ctx context.Context, name string, key []byte) (KeyInfo, error) {
	if len(key) != KeySize {
		return KeyInfo{}, fmt.Errorf("import key %q: the key is %d bytes; it must be exactly %d", name, len(key), KeySize)
	}
	return s.insertKey(ctx, "import", name, key)
}

// insertKey stores key as version 1 of name; op names the operation in errors.
func (s *sqliteStore) insertKey(ctx context.Context, op, name string, key []byte) (KeyInfo, error) {
	if err := CheckName(name); err != nil {
		return KeyInfo{}, fmt.Errorf("%s key: %w", op, err)
	}
	now := time.Now().UTC()
	sealed := s.seal.seal(name, 1, key)
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO keys (name, current_version, created_ns) VALUES (?, 1, ?)
			ON CONFLICT (name) DO NOTHING`, name, now.UnixNano())
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return ErrExists
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO key_versions (name, version, created_ns, sealed) VALUES (?, 1, ?, ?)`,
			name, now.UnixNano(), sealed)
		return err
	})
	if err != nil {
		return KeyInfo{}, fmt.Errorf("%s key %q: %w", op, name, err)
	}
	return KeyInfo{Name: name, Version: 1, Created: now}, nil
}

func (s *sqliteStore) Key(ctx context.Context, name string, version int) ([]byte, error) {
	if err := CheckName(name); err != nil {
		return nil, fmt.Errorf("get key: %w", err)
	}
	if version < 0 {
		return nil, fmt.Errorf("get key %q: version %d: versions start at 1", name, version)
	}
	var row *sql.Row
	if version == Current {
		row = s.currentKey.QueryRowContext(ctx, name)
	} else {
		row = s.keyVersion.QueryRowContext(ctx, name, version)
	}
	var stored int
	var sealed []byte
	err := row.Scan(&stored, &sealed)
	switch {
	case errors.Is(err, sql.ErrNoRows) && version == Current:
		return nil, fmt.Errorf("key %q: %w", name, ErrNotFound)
	case errors.Is(err, sql.ErrNoRows):
		return nil, fmt.Errorf("key %q version %d: %w", name, version, ErrNotFound)
	case err != nil:
		return nil, fmt.Errorf("get key %q: %w", name, err)
	}
	return s.seal.open(name, stored, sealed)
}

func (s *sqliteStore) ListKeys(ctx context.Context) ([]KeyInfo, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT k.name, k.current_version, k.created_ns, v.created_ns FROM keys k
		JOIN key_versions v ON v.name = k.name AND v.version = k.current_version
		ORDER BY k.name`)
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	defer rows.Close()
	var keys []KeyInfo
	for rows.Next() {
		var k KeyInfo
		var created, rotated int64
		if err := rows.Scan(&k.Name, &k.Version, &created, &rotated); err != nil {
			return nil, fmt.Errorf("list keys: %w", err)
		}
		k.Created = fromNanos(created)
		if k.Version > 1 {
			k.Rotated = fromNanos(rotated)
		}
		keys = append(keys, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	return keys, nil
}

func (s *sqliteStore) RotateKey(ctx context.Context, name string) (KeyInfo, error) {
	if err := CheckName(name); err != nil {
		return KeyInfo{}, fmt.Errorf("rotate key: %w", err)
	}
	key := make([]byte, KeySize)
	defer clear(key)
	rand.Read(key) // never fails
	info := KeyInfo{Name: name}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var created int64
		err := tx.QueryRowContext(ctx, `SELECT current_version, created_ns FROM keys WHERE name = ?`, name).Scan(&info.Version, &created)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		info.Version++
		info.Created = fromNanos(created)
		info.Rotated = time.Now().UTC()
		if _, err := tx.ExecContext(ctx, `INSERT INTO key_versions (name, version, created_ns, sealed) VALUES (?, ?, ?, ?)`,
			name, info.Version, info.Rotated.UnixNano(), s.seal.seal(name, info.Version, key)); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE keys SET current_version = ? WHERE name = ?`, info.Version, name)
		return err
	})
	if err != nil {
		return KeyInfo{}, fmt.Errorf("rotate key %q: %w", name, err)
	}
	return info, nil
}

func (s *sqliteStore) DeleteKey(ctx context.Context, name string) error {
	if err := CheckName(name); err != nil {
		return fmt.Errorf("delete key: %w", err)
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM key_versions WHERE name = ?`, name); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM keys WHERE name = ?`, name)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return ErrNotFound
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete key %q: %w", name, err)
	}
	return nil
}

// inTx runs f in a write transaction and commits it if f succeeds.
func (s *sqliteStore) inTx(ctx context.Context, f func(*sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := f(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// AppendAudit commits records in groups: each durable commit costs a disk flush, and the
// records that wait for the same commit share it. A commit may carry other callers' records, so
// once under way it is not cancelled with ctx.
func (s *sqliteStore) AppendAudit(ctx context.Context, r AuditRecord) (int64, error) {
	if err := r.check(); err != nil {
		return 0, err
	}
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	p := &pendingRecord{r: r}
	s.queueMu.Lock()
	s.queue = append(s.queue, p)
	s.queueMu.Unlock()

	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	if !p.done { // no one committed it while this call waited: commit all that wait
		s.queueMu.Lock()
		batch := s.queue
		s.queue = nil
		s.queueMu.Unlock()
		s.commitAudit(context.WithoutCancel(ctx), batch)
	}
	if p.err != nil {
		return 0, fmt.Errorf("append audit record: %w", p.err)
	}
	return p.id, nil
}

// pendingRecord is an audit record on its way to the database. Its other fields are set under
// commitMu.
type pendingRecord struct {
	r    AuditRecord
	done bool
	id   int64
	err  error
}

// commitAudit writes batch in one transaction and sets the outcome of each record.
func (s *sqliteStore) commitAudit(ctx context.Context, batch []*pendingRecord) {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		stmt := tx.StmtContext(ctx, s.insertAudit)
		for _, p := range batch {
			r := &p.r
			rtmrs, _ := json.Marshal(r.RTMRs) // a []string always marshals
			keys, _ := json.Marshal(r.Keys)
			res, err := stmt.ExecContext(ctx, r.Time.UnixNano(), r.Peer, r.TEE, r.Platform,
				r.MREnclave, r.MRSigner, r.ISVProdID, r.ISVSVN, r.MRTD, string(rtmrs), r.Measurement,
				r.TCBStatus, r.Debug, r.Workload, string(keys), string(r.Decision), r.Reason, r.Manifest)
			if err != nil {
				return err
			}
			if p.id, err = res.LastInsertId(); err != nil {
				return err
			}
		}
		return nil
	})
	for _, p := range batch {
		p.done, p.err = true, err
	}
}

func (s *sqliteStore) AuditRecords(ctx context.Context, f AuditFilter) iter.Seq2[AuditRecord, error] {
	return func(yield func(AuditRecord, error) bool) {
		since := int64(math.MinInt64)
		if !f.Since.IsZero() {
			since = f.Since.UnixNano()
		}
		limit := -1 // no limit, to SQLite
		if f.Limit > 0 {
			limit = f.Limit
		}
		const cols = `id, time_ns, peer, tee, platform, mrenclave, mrsigner, isv_prod_id, isv_svn, mrtd, rtmrs,
			measurement, tcb_status, debug, workload, keys, decision, reason, manifest`
		q := `SELECT ` + cols + ` FROM audit WHERE id > ? AND time_ns >= ? ORDER BY id LIMIT ?`
		if f.Tail {
			q = `SELECT * FROM (SELECT ` + cols + ` FROM audit WHERE id > ? AND time_ns >= ? ORDER BY id DESC LIMIT ?) ORDER BY id`
		}
		rows, err := s.r.QueryContext(ctx, q, f.After, since, limit)
		if err != nil {
			yield(AuditRecord{}, fmt.Errorf("read audit records: %w", err))
			return
		}
		defer rows.Close()
		for rows.Next() {
			var r AuditRecord
			var t int64
			var rtmrs, keys string
			var prodID, svn sql.Null[uint16]
			if err := rows.Scan(&r.ID, &t, &r.Peer, &r.TEE, &r.Platform, &r.MREnclave, &r.MRSigner, &prodID, &svn,
				&r.MRTD, &rtmrs, &r.Measurement, &r.TCBStatus, &r.Debug, &r.Workload, &keys, &r.Decision, &r.Reason, &r.Manifest); err != nil {
				yield(AuditRecord{}, fmt.Errorf("read audit records: %w", err))
				return
			}
			r.Time = fromNanos(t)
			if prodID.Valid {
				r.ISVProdID = &prodID.V
			}
			if svn.Valid {
				r.ISVSVN = &svn.V
			}
			if err := errors.Join(json.Unmarshal([]byte(rtmrs), &r.RTMRs), json.Unmarshal([]byte(keys), &r.Keys)); err != nil {
				yield(AuditRecord{}, fmt.Errorf("read audit record %d: %w", r.ID, err))
				return
			}
			if !yield(r, nil) {
				return
			}
		}
		if err := rows.Err(); err != nil {
			yield(AuditRecord{}, fmt.Errorf("read audit records: %w", err))
		}
	}
}

func fromNanos(ns int64) time.Time {
	return time.Unix(0, ns).UTC()
}
