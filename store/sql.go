package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"math"
	"strings"
	"time"
)

const checkName = "master_key_check" // the meta row that holds the sealer's check value

// auditTCBMigration adds the columns of what a record's TCB status rests on, in both backends
// (SQLite takes BIGINT for INTEGER): their schema versions 3 (SQLite) and 2 (PostgreSQL).
const auditTCBMigration = `
-- What a record's TCB status rests on (AuditRecord), encoded in the chain as record version 2.
-- Older records have none of it.
ALTER TABLE audit ADD COLUMN advisory_ids TEXT NOT NULL DEFAULT 'null'; -- JSON: an array of IDs, or null
ALTER TABLE audit ADD COLUMN tcb_date_ns BIGINT;
ALTER TABLE audit ADD COLUMN tcb_evaluation_data_number INTEGER NOT NULL DEFAULT 0;
ALTER TABLE audit ADD COLUMN qe_status TEXT NOT NULL DEFAULT '';
ALTER TABLE audit ADD COLUMN tdx_module_id TEXT NOT NULL DEFAULT '';
ALTER TABLE audit ADD COLUMN tdx_module_svn INTEGER;
ALTER TABLE audit ADD COLUMN tdx_module_status TEXT NOT NULL DEFAULT '';
`

// decisions are the values the audit table's decision column admits once key changes are
// records (schema versions 6 in SQLite, 5 in PostgreSQL).
const decisions = `('allow', 'deny', 'key-create', 'key-import', 'key-rotate', 'key-delete')`

// keyHistoryMigration follows, in both backends, the migration that lets the decision column
// hold key changes.
const keyHistoryMigration = `
-- The version a key change made (AuditRecord.KeyVersion), encoded in the chain as record version 3.
ALTER TABLE audit ADD COLUMN key_version INTEGER NOT NULL DEFAULT 0;
CREATE INDEX audit_key_changes ON audit (keys, key_version) WHERE key_version > 0;
-- The state of keys that a checkpoint signs (Checkpoint.Keys), as JSON: an object, or null.
ALTER TABLE audit_checkpoints ADD COLUMN keys TEXT NOT NULL DEFAULT 'null';
-- The last version of each deleted key, which a key created again under its name continues.
CREATE TABLE deleted_keys (
	name    TEXT PRIMARY KEY,
	version INTEGER NOT NULL CHECK (version >= 1)
);
`

// sqlStore is what both backends share: keys and audit records in tables of the same shape,
// over database/sql, with the same statements (SQLite takes PostgreSQL's $1 placeholders).
// What differs is in dialect.
type sqlStore struct {
	w, r *sql.DB // writes and reads: in SQLite one connection for writes, several for reads
	d    *dialect
	seal *sealer
	// Statements of every key release, prepared once rather than on each call.
	currentKey, keyVersion, insertAudit *sql.Stmt

	audit groupCommit
}

// dialect is what one backend does its own way.
type dialect struct {
	name       string   // in messages
	migrations []string // migrations[i] makes schema version i+1
	// lock is run first in the transactions that migrate the schema or append to the audit
	// chain, so that servers sharing the database take their turns; "" where the
	// transaction's own write lock does (SQLite).
	lock string
}

// newSQLStore makes the shared store over the connections w and r (which may be the same): it
// migrates the schema, checks the master key and prepares statements. It closes w and r if it
// fails.
func newSQLStore(w, r *sql.DB, d *dialect, seal *sealer) (*sqlStore, error) {
	s := &sqlStore{w: w, r: r, d: d, seal: seal}
	s.audit.commit = s.commitAudit
	err := s.migrate(context.Background())
	if err == nil {
		err = s.prepare()
	}
	if err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *sqlStore) Close() error {
	var errs []error
	for _, stmt := range []*sql.Stmt{s.currentKey, s.keyVersion, s.insertAudit} {
		if stmt != nil {
			errs = append(errs, stmt.Close())
		}
	}
	errs = append(errs, s.r.Close())
	if s.w != s.r {
		errs = append(errs, s.w.Close())
	}
	return errors.Join(errs...)
}

// prepare prepares the statements that every key release runs.
func (s *sqlStore) prepare() error {
	var err error
	// A key whose current version's record is missing gives a NULL sealed (ErrVersionMissing).
	if s.currentKey, err = s.r.Prepare(`SELECT k.current_version, v.sealed FROM keys k
		LEFT JOIN key_versions v ON v.name = k.name AND v.version = k.current_version
		WHERE k.name = $1`); err != nil {
		return err
	}
	if s.keyVersion, err = s.r.Prepare(`SELECT version, sealed FROM key_versions WHERE name = $1 AND version = $2`); err != nil {
		return err
	}
	s.insertAudit, err = s.w.Prepare(`INSERT INTO audit (` + auditColumns + `)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20,
			$21, $22, $23, $24, $25, $26, $27, $28, $29, $30)`)
	return err
}

// migrate brings the schema up to date and checks the master key, or, in a new store, records
// the check value for it.
func (s *sqlStore) migrate(ctx context.Context) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := s.lock(ctx, tx); err != nil {
		return fmt.Errorf("schema: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (
		version    INTEGER PRIMARY KEY,
		applied_ns BIGINT NOT NULL)`); err != nil {
		return fmt.Errorf("schema: %w", err)
	}
	var version int
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&version); err != nil {
		return fmt.Errorf("schema: %w", err)
	}
	if version > len(s.d.migrations) {
		return fmt.Errorf("schema version %d is newer than this ppml knows (%d): upgrade ppml", version, len(s.d.migrations))
	}
	if version > 0 {
		var check []byte
		if err := tx.QueryRowContext(ctx, `SELECT value FROM meta WHERE name = $1`, checkName).Scan(&check); err != nil {
			return fmt.Errorf("master key check value: %w", err)
		}
		if err := s.seal.verify(check); err != nil {
			return err
		}
	}
	for v := version + 1; v <= len(s.d.migrations); v++ {
		if _, err := tx.ExecContext(ctx, s.d.migrations[v-1]); err != nil {
			return fmt.Errorf("schema version %d: %w", v, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version, applied_ns) VALUES ($1, $2)`, v, time.Now().UnixNano()); err != nil {
			return fmt.Errorf("schema version %d: %w", v, err)
		}
	}
	if version == 0 {
		if _, err := tx.ExecContext(ctx, `INSERT INTO meta (name, value) VALUES ($1, $2)`, checkName, s.seal.checkValue()); err != nil {
			return fmt.Errorf("master key check value: %w", err)
		}
	}
	return tx.Commit()
}

func (s *sqlStore) AuditRef(id int64) string { return s.seal.auditRef(id) }

func (s *sqlStore) CreateKey(ctx context.Context, name string) (KeyInfo, error) {
	key := make([]byte, KeySize)
	defer clear(key)
	rand.Read(key) // never fails
	return s.insertKey(ctx, KeyCreate, name, key)
}

func (s *sqlStore) ImportKey(ctx context.Context, name string, key []byte) (KeyInfo, error) {
	if len(key) != KeySize {
		return KeyInfo{}, fmt.Errorf("import key %q: the key is %d bytes; it must be exactly %d", name, len(key), KeySize)
	}
	return s.insertKey(ctx, KeyImport, name, key)
}

// insertKey stores key as the first version of name: 1, or the one after the last version of a
// deleted key of that name. op is KeyCreate or KeyImport.
func (s *sqlStore) insertKey(ctx context.Context, op Decision, name string, key []byte) (KeyInfo, error) {
	verb := strings.TrimPrefix(string(op), "key-")
	if err := CheckName(name); err != nil {
		return KeyInfo{}, fmt.Errorf("%s key: %w", verb, err)
	}
	info := KeyInfo{Name: name, Version: 1, Created: time.Now().UTC()}
	err := s.keyChange(ctx, func(tx *sql.Tx) error {
		last, err := lastVersion(ctx, tx, name)
		if err != nil {
			return err
		}
		info.Version = last + 1
		res, err := tx.ExecContext(ctx, `INSERT INTO keys (name, current_version, created_ns) VALUES ($1, $2, $3)
			ON CONFLICT (name) DO NOTHING`, name, info.Version, info.Created.UnixNano())
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return ErrExists
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM deleted_keys WHERE name = $1`, name); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO key_versions (name, version, created_ns, sealed) VALUES ($1, $2, $3, $4)`,
			name, info.Version, info.Created.UnixNano(), s.seal.seal(name, info.Version, key))
		return err
	}, func() AuditRecord { return keyRecord(op, name, info.Version) })
	if err != nil {
		return KeyInfo{}, fmt.Errorf("%s key %q: %w", verb, name, err)
	}
	return info, nil
}

func (s *sqlStore) Key(ctx context.Context, name string, version int) ([]byte, int, error) {
	if err := CheckName(name); err != nil {
		return nil, 0, fmt.Errorf("get key: %w", err)
	}
	if version < 0 {
		return nil, 0, fmt.Errorf("get key %q: version %d: versions start at 1", name, version)
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
		return nil, 0, fmt.Errorf("key %q: %w", name, ErrNotFound)
	case errors.Is(err, sql.ErrNoRows):
		return nil, 0, fmt.Errorf("key %q version %d: %w", name, version, ErrNotFound)
	case err != nil:
		return nil, 0, fmt.Errorf("get key %q: %w", name, err)
	case sealed == nil:
		return nil, 0, fmt.Errorf("key %q version %d: %w", name, stored, ErrVersionMissing)
	}
	key, err := s.seal.open(name, stored, sealed)
	return key, stored, err
}

func (s *sqlStore) KeyVersions(ctx context.Context) (KeyStates, error) {
	// A key's state is the newest version it has up to its current one, which is the one that
	// a database writer who deleted the current version's record rolled it back to; 0 if none.
	rows, err := s.r.QueryContext(ctx, `SELECT name, COALESCE((SELECT MAX(v.version) FROM key_versions v
			WHERE v.name = k.name AND v.version <= k.current_version), 0), FALSE FROM keys k
		UNION ALL SELECT name, version, TRUE FROM deleted_keys`)
	if err != nil {
		return nil, fmt.Errorf("key versions: %w", err)
	}
	defer rows.Close()
	keys := KeyStates{}
	for rows.Next() {
		var name string
		var k KeyState
		if err := rows.Scan(&name, &k.Version, &k.Deleted); err != nil {
			return nil, fmt.Errorf("key versions: %w", err)
		}
		keys.Raise(KeyStates{name: k})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("key versions: %w", err)
	}
	return keys, nil
}

func (s *sqlStore) ListKeys(ctx context.Context) ([]KeyInfo, error) {
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
		if created != rotated {
			k.Rotated = fromNanos(rotated)
		}
		keys = append(keys, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	return keys, nil
}

func (s *sqlStore) RotateKey(ctx context.Context, name string) (KeyInfo, error) {
	if err := CheckName(name); err != nil {
		return KeyInfo{}, fmt.Errorf("rotate key: %w", err)
	}
	key := make([]byte, KeySize)
	defer clear(key)
	rand.Read(key) // never fails
	info := KeyInfo{Name: name}
	err := s.keyChange(ctx, func(tx *sql.Tx) error {
		var created int64
		err := tx.QueryRowContext(ctx, `SELECT created_ns FROM keys WHERE name = $1`, name).Scan(&created)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if info.Version, err = lastVersion(ctx, tx, name); err != nil {
			return err
		}
		info.Version++
		info.Created = fromNanos(created)
		info.Rotated = time.Now().UTC()
		if _, err := tx.ExecContext(ctx, `INSERT INTO key_versions (name, version, created_ns, sealed) VALUES ($1, $2, $3, $4)`,
			name, info.Version, info.Rotated.UnixNano(), s.seal.seal(name, info.Version, key)); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE keys SET current_version = $1 WHERE name = $2`, info.Version, name)
		return err
	}, func() AuditRecord { return keyRecord(KeyRotate, name, info.Version) })
	if err != nil {
		return KeyInfo{}, fmt.Errorf("rotate key %q: %w", name, err)
	}
	return info, nil
}

func (s *sqlStore) DeleteKey(ctx context.Context, name string) error {
	if err := CheckName(name); err != nil {
		return fmt.Errorf("delete key: %w", err)
	}
	var last int
	err := s.keyChange(ctx, func(tx *sql.Tx) error {
		var exists bool
		err := tx.QueryRowContext(ctx, `SELECT TRUE FROM keys WHERE name = $1`, name).Scan(&exists)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if last, err = lastVersion(ctx, tx, name); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM key_versions WHERE name = $1`, name); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM keys WHERE name = $1`, name); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO deleted_keys (name, version) VALUES ($1, $2)
			ON CONFLICT (name) DO UPDATE SET version = excluded.version`, name, last)
		return err
	}, func() AuditRecord { return keyRecord(KeyDelete, name, last) })
	if err != nil {
		return fmt.Errorf("delete key %q: %w", name, err)
	}
	return nil
}

// lastVersion returns the last version that key name has had, by every account the database
// keeps: its current version, its versions, a deleted key's tombstone and the audit records of
// its changes; 0 if none. A new version is the one after, so that a version number that someone
// who can write the database took away (by setting the current version back or deleting
// versions) is not given to another key.
func lastVersion(ctx context.Context, tx *sql.Tx, name string) (int, error) {
	changes, _ := json.Marshal([]string{name}) // as auditArgs writes the keys of a key's change
	var last int
	err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(v), 0) FROM (
		SELECT current_version AS v FROM keys WHERE name = $1
		UNION ALL SELECT MAX(version) FROM key_versions WHERE name = $1
		UNION ALL SELECT version FROM deleted_keys WHERE name = $1
		UNION ALL SELECT MAX(key_version) FROM audit WHERE key_version > 0 AND keys = $2) AS versions`, name, string(changes)).Scan(&last)
	return last, err
}

// keyRecord is the audit record of a change of key name that left it at version.
func keyRecord(op Decision, name string, version int) AuditRecord {
	return AuditRecord{Time: time.Now(), Decision: op, Keys: []string{name}, KeyVersion: version}
}

// keyChange runs change in a write transaction that also appends to the audit chain the record
// that record returns once change succeeded, and commits both or neither.
func (s *sqlStore) keyChange(ctx context.Context, change func(*sql.Tx) error, record func() AuditRecord) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		// The chain's lock first, as appenders take it, then the keys.
		if err := s.lock(ctx, tx); err != nil {
			return err
		}
		if err := change(tx); err != nil {
			return err
		}
		r := record()
		if err := r.check(); err != nil {
			return err
		}
		return s.appendInTx(ctx, tx, []*pendingRecord{{r: r}})
	})
}

// lock takes the dialect's lock in tx, if it has one.
func (s *sqlStore) lock(ctx context.Context, tx *sql.Tx) error {
	if s.d.lock == "" {
		return nil
	}
	_, err := tx.ExecContext(ctx, s.d.lock)
	return err
}

// inTx runs f in a write transaction and commits it if f succeeds.
func (s *sqlStore) inTx(ctx context.Context, f func(*sql.Tx) error) error {
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

func (s *sqlStore) AppendAudit(ctx context.Context, r AuditRecord) (int64, error) {
	return s.audit.append(ctx, r)
}

// commitAudit writes batch in one transaction, after the chain's head.
func (s *sqlStore) commitAudit(ctx context.Context, batch []*pendingRecord) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if err := s.lock(ctx, tx); err != nil {
			return err
		}
		return s.appendInTx(ctx, tx, batch)
	})
}

// appendInTx writes batch after the chain's head in tx, which holds the chain's lock.
func (s *sqlStore) appendInTx(ctx context.Context, tx *sql.Tx, batch []*pendingRecord) error {
	var id int64
	var head []byte
	err := tx.QueryRowContext(ctx, `SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1`).Scan(&id, &head)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	chain(id, head, batch)
	stmt := tx.StmtContext(ctx, s.insertAudit)
	for _, p := range batch {
		if _, err := stmt.ExecContext(ctx, auditArgs(&p.r)...); err != nil {
			return err
		}
	}
	return nil
}

func (s *sqlStore) AuditHead(ctx context.Context) (int64, string, error) {
	var id int64
	var hash []byte
	err := s.r.QueryRowContext(ctx, `SELECT id, hash FROM audit WHERE hash IS NOT NULL ORDER BY id DESC LIMIT 1`).Scan(&id, &hash)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, "", nil
	}
	if err != nil {
		return 0, "", fmt.Errorf("audit head: %w", err)
	}
	return id, hex.EncodeToString(hash), nil
}

func (s *sqlStore) AddCheckpoint(ctx context.Context, c Checkpoint) (int64, error) {
	args, err := checkpointArgs(&c)
	if err != nil {
		return 0, err
	}
	var id int64
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, `INSERT INTO audit_checkpoints (`+checkpointColumns+`)
			VALUES ($1, $2, $3, $4, $5, $6) RETURNING id`, args...).Scan(&id)
	})
	if err != nil {
		return 0, fmt.Errorf("add checkpoint: %w", err)
	}
	return id, nil
}

func (s *sqlStore) Checkpoints(ctx context.Context) iter.Seq2[Checkpoint, error] {
	return queryRows(ctx, s.r, "read checkpoints", scanCheckpoint, `SELECT id, `+checkpointColumns+` FROM audit_checkpoints ORDER BY id`)
}

func (s *sqlStore) AuditRecords(ctx context.Context, f AuditFilter) iter.Seq2[AuditRecord, error] {
	since := int64(math.MinInt64)
	if !f.Since.IsZero() {
		since = f.Since.UnixNano()
	}
	limit := math.MaxInt64
	if f.Limit > 0 {
		limit = f.Limit
	}
	q := `SELECT ` + auditColumns + ` FROM audit WHERE id > $1 AND time_ns >= $2 ORDER BY id LIMIT $3`
	if f.Tail {
		q = `SELECT * FROM (SELECT ` + auditColumns + ` FROM audit WHERE id > $1 AND time_ns >= $2 ORDER BY id DESC LIMIT $3) AS tail ORDER BY id`
	}
	return queryRows(ctx, s.r, "read audit records", scanAudit, q, f.After, since, limit)
}

// queryRows yields the rows of a query, each read with scan; what names the reading in errors.
func queryRows[T any](ctx context.Context, db *sql.DB, what string, scan func(func(...any) error) (T, error), q string, args ...any) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		var zero T
		rows, err := db.QueryContext(ctx, q, args...)
		if err != nil {
			yield(zero, fmt.Errorf("%s: %w", what, err))
			return
		}
		defer rows.Close()
		for rows.Next() {
			if !yield(scan(rows.Scan)) {
				return
			}
		}
		if err := rows.Err(); err != nil {
			yield(zero, fmt.Errorf("%s: %w", what, err))
		}
	}
}

func fromNanos(ns int64) time.Time {
	return time.Unix(0, ns).UTC()
}
