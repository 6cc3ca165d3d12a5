package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"time"

	_ "modernc.org/sqlite" // the pure-Go SQLite driver, registered as "sqlite"
)

// sqliteMigrations are the schema changes, in order: sqliteMigrations[i] makes schema version
// i+1. Applied versions are recorded in schema_version; a released migration is never edited,
// only followed.
var sqliteMigrations = []string{`
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
-- The audit chain (chain.go). Records from before this migration have no hashes: the chain
-- starts at the first record after it.
ALTER TABLE audit ADD COLUMN prev_hash BLOB;
ALTER TABLE audit ADD COLUMN hash BLOB;
CREATE TABLE audit_checkpoints (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	time_ns     INTEGER NOT NULL,
	record_id   INTEGER NOT NULL,
	record_hash BLOB NOT NULL,
	signer      TEXT NOT NULL,
	signature   BLOB NOT NULL
);
`, `
-- What each GPU's evidence said (GPURecord), as JSON: an array, or null.
ALTER TABLE audit ADD COLUMN gpus TEXT NOT NULL DEFAULT 'null';
`, `
-- The workload measurement that the evidence's report data carried (ppml run's).
ALTER TABLE audit ADD COLUMN manifest TEXT NOT NULL DEFAULT '';
`, auditTCBMigration, `
-- Key changes are audit records: decisions of their own, which the CHECK of decision did not
-- admit. SQLite alters no CHECK: the table is made again, with the same columns, and its rows
-- copied.
CREATE TABLE audit_new (
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
	rtmrs       TEXT NOT NULL,
	measurement TEXT NOT NULL,
	tcb_status  TEXT NOT NULL,
	debug       INTEGER NOT NULL,
	workload    TEXT NOT NULL,
	keys        TEXT NOT NULL,
	decision    TEXT NOT NULL CHECK (decision IN ` + decisions + `),
	reason      TEXT NOT NULL,
	prev_hash   BLOB,
	hash        BLOB,
	gpus        TEXT NOT NULL DEFAULT 'null',
	manifest    TEXT NOT NULL DEFAULT '',
	advisory_ids TEXT NOT NULL DEFAULT 'null',
	tcb_date_ns BIGINT,
	tcb_evaluation_data_number INTEGER NOT NULL DEFAULT 0,
	qe_status   TEXT NOT NULL DEFAULT '',
	tdx_module_id TEXT NOT NULL DEFAULT '',
	tdx_module_svn INTEGER,
	tdx_module_status TEXT NOT NULL DEFAULT ''
);
INSERT INTO audit_new SELECT * FROM audit;
DROP TABLE audit;
ALTER TABLE audit_new RENAME TO audit;
CREATE INDEX audit_time ON audit (time_ns);
` + keyHistoryMigration}

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

// sqliteStore is the SQLite backend: the shared store over one connection for writes and
// several for reads, and one more that checkpoints the WAL.
type sqliteStore struct {
	*sqlStore
	ckpt *sql.DB
	stop context.CancelFunc // ends checkpoints
	done chan struct{}      // closed when checkpoints has returned
}

var sqliteDialect = &dialect{name: "sqlite", migrations: sqliteMigrations}

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
	// sql.Open only checks its arguments, which are ours: it does not fail.
	w, _ := sql.Open("sqlite", uri(writeParams))
	w.SetMaxOpenConns(1)
	r, _ := sql.Open("sqlite", uri(readParams))
	readers := max(4, runtime.GOMAXPROCS(0))
	r.SetMaxOpenConns(readers)
	r.SetMaxIdleConns(readers)
	shared, err := newSQLStore(w, r, sqliteDialect, seal)
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", path, err)
	}
	s := &sqliteStore{sqlStore: shared, done: make(chan struct{})}
	s.ckpt, _ = sql.Open("sqlite", uri(checkpointParams))
	s.ckpt.SetMaxOpenConns(1)
	ctx, stop := context.WithCancel(context.Background())
	s.stop = stop
	go s.checkpoints(ctx)
	return s, nil
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

func (s *sqliteStore) Close() error {
	s.stop()
	<-s.done
	return errors.Join(s.ckpt.Close(), s.sqlStore.Close())
}
