package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"iter"
	"math"
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
	if s.currentKey, err = s.r.Prepare(`SELECT v.version, v.sealed FROM keys k
		JOIN key_versions v ON v.name = k.name AND v.version = k.current_version
		WHERE k.name = $1`); err != nil {
		return err
	}
	if s.keyVersion, err = s.r.Prepare(`SELECT version, sealed FROM key_versions WHERE name = $1 AND version = $2`); err != nil {
		return err
	}
	s.insertAudit, err = s.w.Prepare(`INSERT INTO audit (` + auditColumns + `)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20,
			$21, $22, $23, $24, $25, $26, $27, $28, $29)`)
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
	return s.insertKey(ctx, "create", name, key)
}

func (s *sqlStore) ImportKey(ctx context.Context, name string, key []byte) (KeyInfo, error) {
	if len(key) != KeySize {
		return KeyInfo{}, fmt.Errorf("import key %q: the key is %d bytes; it must be exactly %d", name, len(key), KeySize)
	}
	return s.insertKey(ctx, "import", name, key)
}

// insertKey stores key as version 1 of name; op names the operation in errors.
func (s *sqlStore) insertKey(ctx context.Context, op, name string, key []byte) (KeyInfo, error) {
	if err := CheckName(name); err != nil {
		return KeyInfo{}, fmt.Errorf("%s key: %w", op, err)
	}
	now := time.Now().UTC()
	sealed := s.seal.seal(name, 1, key)
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO keys (name, current_version, created_ns) VALUES ($1, 1, $2)
			ON CONFLICT (name) DO NOTHING`, name, now.UnixNano())
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return ErrExists
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO key_versions (name, version, created_ns, sealed) VALUES ($1, 1, $2, $3)`,
			name, now.UnixNano(), sealed)
		return err
	})
	if err != nil {
		return KeyInfo{}, fmt.Errorf("%s key %q: %w", op, name, err)
	}
	return KeyInfo{Name: name, Version: 1, Created: now}, nil
}

func (s *sqlStore) Key(ctx context.Context, name string, version int) ([]byte, error) {
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

func (s *sqlStore) RotateKey(ctx context.Context, name string) (KeyInfo, error) {
	if err := CheckName(name); err != nil {
		return KeyInfo{}, fmt.Errorf("rotate key: %w", err)
	}
	key := make([]byte, KeySize)
	defer clear(key)
	rand.Read(key) // never fails
	info := KeyInfo{Name: name}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var created int64
		err := tx.QueryRowContext(ctx, `SELECT current_version, created_ns FROM keys WHERE name = $1`, name).Scan(&info.Version, &created)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
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
	})
	if err != nil {
		return KeyInfo{}, fmt.Errorf("rotate key %q: %w", name, err)
	}
	return info, nil
}

func (s *sqlStore) DeleteKey(ctx context.Context, name string) error {
	if err := CheckName(name); err != nil {
		return fmt.Errorf("delete key: %w", err)
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM key_versions WHERE name = $1`, name); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM keys WHERE name = $1`, name)
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
	})
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
			VALUES ($1, $2, $3, $4, $5) RETURNING id`, args...).Scan(&id)
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
