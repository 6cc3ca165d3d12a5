package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// postgresMigrations are the schema changes of the PostgreSQL backend, as sqliteMigrations are
// SQLite's: never edited once released, only followed. The tables have the same columns.
var postgresMigrations = []string{`
CREATE TABLE meta (
	name  TEXT PRIMARY KEY,
	value BYTEA NOT NULL
);
CREATE TABLE keys (
	name            TEXT PRIMARY KEY,
	current_version INTEGER NOT NULL CHECK (current_version >= 1),
	created_ns      BIGINT NOT NULL
);
CREATE TABLE key_versions (
	name       TEXT NOT NULL REFERENCES keys (name),
	version    INTEGER NOT NULL CHECK (version >= 1),
	created_ns BIGINT NOT NULL,
	sealed     BYTEA NOT NULL,
	PRIMARY KEY (name, version)
);
CREATE TABLE audit (
	id          BIGINT PRIMARY KEY,
	time_ns     BIGINT NOT NULL,
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
	debug       BOOLEAN NOT NULL,
	workload    TEXT NOT NULL,
	keys        TEXT NOT NULL, -- JSON: an array of key names, or null
	decision    TEXT NOT NULL CHECK (decision IN ('allow', 'deny')),
	reason      TEXT NOT NULL,
	prev_hash   BYTEA,
	hash        BYTEA
);
CREATE INDEX audit_time ON audit (time_ns);
CREATE TABLE audit_checkpoints (
	id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	time_ns     BIGINT NOT NULL,
	record_id   BIGINT NOT NULL,
	record_hash BYTEA NOT NULL,
	signer      TEXT NOT NULL,
	signature   BYTEA NOT NULL
);
`, `
-- What each GPU's evidence said (GPURecord), as JSON: an array, or null.
ALTER TABLE audit ADD COLUMN gpus TEXT NOT NULL DEFAULT 'null';
`, `
-- The workload measurement that the evidence's report data carried (ppml run's).
ALTER TABLE audit ADD COLUMN manifest TEXT NOT NULL DEFAULT '';
`, auditTCBMigration, `
-- Key changes are audit records: decisions of their own.
ALTER TABLE audit DROP CONSTRAINT audit_decision_check;
ALTER TABLE audit ADD CONSTRAINT audit_decision_check CHECK (decision IN ` + decisions + `);
` + keyHistoryMigration}

// The servers that share a database take turns, in the transactions that migrate the schema or
// append to the audit chain, through one transaction-level advisory lock: an appender reads the
// chain's head and writes after it while no other can. ("ppml" in ASCII is the lock's number.)
var postgresDialect = &dialect{
	name:       "postgres",
	migrations: postgresMigrations,
	lock:       `SELECT pg_advisory_xact_lock(1886416236)`,
}

// openTimeout bounds the first connection to PostgreSQL, and the schema's migration.
const openTimeout = 30 * time.Second

// postgresConns is the most connections one store opens to PostgreSQL: with several servers on
// one database, PostgreSQL's max_connections (100 by default) must exceed their sum.
const postgresConns = 16

// openPostgres opens the PostgreSQL database at the URL dsn.
func openPostgres(dsn string, masterKey []byte) (*sqlStore, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// pgx's message shows the URL with its password masked.
		return nil, fmt.Errorf("postgres store: %w", err)
	}
	seal, err := newSealer(masterKey)
	if err != nil {
		return nil, err
	}
	where := fmt.Sprintf("postgres store %s@%s:%d/%s", cfg.User, cfg.Host, cfg.Port, cfg.Database)
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(postgresConns)
	db.SetMaxIdleConns(postgresConns)
	ctx, cancel := context.WithTimeout(context.Background(), openTimeout)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	s, err := newSQLStore(db, db, postgresDialect, seal)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	return s, nil
}
