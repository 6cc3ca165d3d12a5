// Package store keeps the secret provisioning server's keys and audit records.
//
// Keys are the data owners' file keys (16-byte Gramine wrap keys), held by name with versions:
// rotating a key makes a new random current version and keeps the old ones, so files encrypted
// under them can still be decrypted and re-encrypted. Key bytes are encrypted at rest with
// AES-256-GCM under a 32-byte master key, bound to their name and version; they are never
// written to the database or a log in the clear, and listing keys never returns them.
//
// Every change of a key (create, import, rotate, delete) is an audit record too, written in the
// transaction that makes the change. A deleted key's name keeps its last version (a tombstone),
// and a key created again under that name continues its numbering, so that no version number
// ever names two different keys: a version older than one already seen is a rollback.
//
// The audit log holds one record per provisioning decision, in the order they were made. It is
// a hash chain: each record carries the SHA-256 of the one before it (chain.go defines the
// encoding), and servers sign checkpoints of the chain's head, so that VerifyAudit finds a
// record changed, deleted or inserted afterwards.
//
// Store is the interface a backend implements. Open picks one by its data source name:
// "sqlite:PATH", the embedded default, is a single SQLite file; "postgres://..." is a
// PostgreSQL database that any number of servers share.
package store

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"strings"
	"time"
)

// KeySize is the size in bytes of a stored key: a Gramine wrap key.
const KeySize = 16

// MasterKeySize is the size in bytes of the master key (AES-256).
const MasterKeySize = 32

// Current asks Store.Key for the current version of a key.
const Current = 0

// MaxNameLen is the longest key name, in bytes.
const MaxNameLen = 128

// Errors that callers may test for with errors.Is.
var (
	ErrNotFound       = errors.New("not found")        // no such key or version
	ErrExists         = errors.New("already exists")   // a key of that name exists
	ErrInvalidName    = errors.New("invalid key name") // see CheckName
	ErrWrongMasterKey = errors.New("wrong master key: it is not the one this store was created with")
	ErrTampered       = errors.New("stored key fails authentication: the record was altered or moved from another key or version")
	ErrVersionMissing = errors.New("its current version is missing from the store: someone who can write the database deleted it")
)

// Store holds keys and audit records. Its methods are safe for concurrent use.
type Store interface {
	// CreateKey stores a new random key as the first version of name: version 1, or, if a key
	// of that name was deleted, the version after its last one.
	CreateKey(ctx context.Context, name string) (KeyInfo, error)
	// ImportKey stores key, which must be KeySize bytes, as the first version of name, as
	// CreateKey does. The store keeps no reference to key.
	ImportKey(ctx context.Context, name string, key []byte) (KeyInfo, error)
	// Key returns the bytes of a version of name, or of its current version if version is
	// Current, and the version it returns. The caller owns the returned slice and should clear
	// it when done. A current version whose record is missing is ErrVersionMissing.
	Key(ctx context.Context, name string, version int) ([]byte, int, error)
	// KeyVersions returns where each key stands: its current version (the newest of its
	// versions up to the current one that the store holds), or, for a deleted key, its
	// last version.
	KeyVersions(ctx context.Context) (KeyStates, error)
	// ListKeys describes every key, ordered by name, without their bytes.
	ListKeys(ctx context.Context) ([]KeyInfo, error)
	// RotateKey makes a new random version of name its current version. Old versions stay
	// available through Key.
	RotateKey(ctx context.Context, name string) (KeyInfo, error)
	// DeleteKey removes every version of name and keeps its last version number.
	DeleteKey(ctx context.Context, name string) error

	// The four methods above write an audit record of what they changed (KeyCreate,
	// KeyImport, KeyRotate, KeyDelete) in the transaction that changes it.

	// AppendAudit adds a record to the audit log and returns the ID it was given; IDs grow
	// in the order records are appended. A record with a zero Time is stamped with the
	// current time. The record is durable when AppendAudit returns.
	AppendAudit(ctx context.Context, r AuditRecord) (int64, error)
	// AuditRecords yields the audit records that f selects, oldest first. An error ends the
	// sequence.
	AuditRecords(ctx context.Context, f AuditFilter) iter.Seq2[AuditRecord, error]
	// AuditHead returns the newest record of the audit chain: its ID and hash. Both are zero
	// when no record is chained yet.
	AuditHead(ctx context.Context) (id int64, hash string, err error)
	// AddCheckpoint stores a signed checkpoint (SignCheckpoint makes them) and returns the ID it
	// was given.
	AddCheckpoint(ctx context.Context, c Checkpoint) (int64, error)
	// Checkpoints yields every checkpoint, oldest first. An error ends the sequence.
	Checkpoints(ctx context.Context) iter.Seq2[Checkpoint, error]
	// AuditRef returns the reference of the audit record with ID id, which a refused client is
	// given: whoever holds the master key finds the record by it, and it tells nobody else how
	// many records there are, as the ID would.
	AuditRef(id int64) string

	// Close releases the store's resources.
	Close() error
}

// KeyInfo describes a key without its bytes.
type KeyInfo struct {
	Name    string    `json:"name"`
	Version int       `json:"version"`          // the current version; the first is 1
	Created time.Time `json:"created"`          // when the first version was made
	Rotated time.Time `json:"rotated,omitzero"` // when the current version was made; zero if never rotated
}

// Decision is the outcome of a provisioning request, or the change of a key that a record
// notes.
type Decision string

// The decisions.
const (
	Allow Decision = "allow"
	Deny  Decision = "deny"

	// The changes of a key: Keys names the key, KeyVersion the version it made (its last
	// version for KeyDelete).
	KeyCreate Decision = "key-create"
	KeyImport Decision = "key-import"
	KeyRotate Decision = "key-rotate"
	KeyDelete Decision = "key-delete"
)

// KeyChange reports whether d is the change of a key rather than a provisioning decision.
func (d Decision) KeyChange() bool {
	return d == KeyCreate || d == KeyImport || d == KeyRotate || d == KeyDelete
}

// KeyState is where a key's history stands: its current version, or, once the key is deleted,
// the last version it had. A deletion comes after the version it ends, and a key created again
// continues from there.
type KeyState struct {
	Version int  `json:"version"`
	Deleted bool `json:"deleted,omitempty"`
}

// Before reports whether k comes before l in a key's history.
func (k KeyState) Before(l KeyState) bool {
	return k.Version < l.Version || k.Version == l.Version && !k.Deleted && l.Deleted
}

func (k KeyState) String() string {
	if k.Deleted {
		return fmt.Sprintf("deleted at version %d", k.Version)
	}
	return fmt.Sprintf("version %d", k.Version)
}

// KeyStates are the states of keys by name.
type KeyStates map[string]KeyState

// Raise raises each of m's states that o has a later one of.
func (m KeyStates) Raise(o KeyStates) {
	for name, k := range o {
		if cur, ok := m[name]; !ok || cur.Before(k) {
			m[name] = k
		}
	}
}

// after returns the state a key change r leaves its key in.
func (r *AuditRecord) after() KeyState {
	return KeyState{Version: r.KeyVersion, Deleted: r.Decision == KeyDelete}
}

// AuditRecord is one provisioning decision. Measurements are lower-case hex, and empty (or nil)
// when the evidence did not carry them or was not verified.
type AuditRecord struct {
	ID       int64     `json:"id"` // assigned by the store
	Time     time.Time `json:"time"`
	Peer     string    `json:"peer"`               // the client's network address
	TEE      string    `json:"tee,omitempty"`      // the kind of evidence: "sgx", "tdx", "snp"
	Platform string    `json:"platform,omitempty"` // who vouched for it: "intel", "amd", "simulated"

	MREnclave   string   `json:"mrenclave,omitempty"`
	MRSigner    string   `json:"mrsigner,omitempty"`
	ISVProdID   *uint16  `json:"isv_prod_id,omitempty"`
	ISVSVN      *uint16  `json:"isv_svn,omitempty"`
	MRTD        string   `json:"mrtd,omitempty"`
	RTMRs       []string `json:"rtmrs,omitempty"`
	Measurement string   `json:"measurement,omitempty"` // SEV-SNP launch measurement
	// Manifest is the workload measurement in the report data's last 32 bytes (ppml run's).
	Manifest string `json:"manifest,omitempty"`

	TCBStatus string `json:"tcb_status,omitempty"`
	// What the TCB status rests on, where the evidence says (Intel DCAP: SGX and TDX): the
	// advisories that apply, the matched TCB level's date, the collateral's TCB evaluation data
	// number, the Quoting Enclave's status and the TDX module's identity and status.
	AdvisoryIDs             []string   `json:"advisory_ids,omitempty"`
	TCBDate                 *time.Time `json:"tcb_date,omitempty"`
	TCBEvaluationDataNumber int        `json:"tcb_evaluation_data_number,omitempty"`
	QEStatus                string     `json:"qe_status,omitempty"`
	TDXModule               *TDXModule `json:"tdx_module,omitempty"`

	Debug    bool     `json:"debug"`
	Workload string   `json:"workload,omitempty"` // the policy entry that matched
	Keys     []string `json:"keys,omitempty"`     // the names of the keys released
	Decision Decision `json:"decision"`
	Reason   string   `json:"reason,omitempty"`
	// KeyVersion is, in the record of a key's change, the version it made.
	KeyVersion int `json:"key_version,omitempty"`

	// The audit chain, in lower-case hex, set by the store: the hash of the record before this
	// one (64 zeros for the first) and this record's own. Both are empty for records written
	// before the store had a chain.
	PrevHash string `json:"prev_hash,omitempty"`
	Hash     string `json:"hash,omitempty"`

	GPUs []GPURecord `json:"gpus,omitempty"` // what the evidence of each GPU said
}

// GPURecord is what one GPU's evidence said, as verified for the workload's GPU policy.
type GPURecord struct {
	Platform      string `json:"platform,omitempty"` // who vouched for it: "nvidia", "simulated"
	Arch          string `json:"arch,omitempty"`     // "Hopper", "Blackwell"
	DriverVersion string `json:"driver_version,omitempty"`
	VBIOSVersion  string `json:"vbios_version,omitempty"`
	FWID          string `json:"fwid,omitempty"`
	Measurements  string `json:"measurements,omitempty"` // "match", "mismatch", "unavailable"
	Mismatched    []int  `json:"mismatched_indices,omitempty"`
	Revocation    string `json:"revocation,omitempty"` // "good", "unchecked"
	Error         string `json:"error,omitempty"`      // why it was refused
}

// TDXModule is the TDX module a TD ran on, as its evidence's verdict named it.
type TDXModule struct {
	ID     string `json:"id"` // TDX_01, ...
	ISVSVN uint8  `json:"isv_svn"`
	Status string `json:"tcb_status"`
}

// AuditFilter selects audit records. The zero filter selects them all.
type AuditFilter struct {
	Since time.Time // only records made at or after Since
	After int64     // only records whose ID is above After
	Limit int       // at most Limit records, the oldest ones; 0 for no limit
	Tail  bool      // with Limit, the newest ones instead, as tail -n does
}

// Open opens the store that dsn names, with the master key its keys are encrypted under. dsn
// is "sqlite:PATH", and the SQLite file is created (mode 0600) if it does not exist, or a
// PostgreSQL URL, "postgres://USER@HOST/DATABASE?...", whose database must exist. A master key
// that differs from the one the store was created with is ErrWrongMasterKey. Open keeps no
// reference to masterKey: the caller may clear it once Open returns.
func Open(dsn string, masterKey []byte) (Store, error) {
	if len(masterKey) != MasterKeySize {
		return nil, fmt.Errorf("the master key is %d bytes; it must be exactly %d", len(masterKey), MasterKeySize)
	}
	scheme, rest, _ := strings.Cut(dsn, ":")
	switch scheme {
	case "sqlite":
		return openSQLite(rest, masterKey)
	case "postgres", "postgresql":
		return openPostgres(dsn, masterKey)
	default:
		// The rest of dsn is not echoed: a mistyped PostgreSQL URL may hold a password.
		return nil, fmt.Errorf("unknown kind of store %q; use sqlite:PATH or postgres://...", scheme)
	}
}

// CheckName reports whether name can name a key: 1 to MaxNameLen bytes of ASCII letters,
// digits, '.', '_' and '-', starting with a letter or digit. (Gramine reserves names that
// start with '_' for its own keys.)
func CheckName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty", ErrInvalidName)
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("%w: %d bytes long, more than %d", ErrInvalidName, len(name), MaxNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		alnum := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
		if !alnum && (i == 0 || c != '.' && c != '_' && c != '-') {
			return fmt.Errorf("%w %q: use letters, digits, '.', '_' and '-', starting with a letter or digit", ErrInvalidName, name)
		}
	}
	return nil
}

// check reports whether r can be stored.
func (r *AuditRecord) check() error {
	switch {
	case r.Decision.KeyChange() && (len(r.Keys) != 1 || r.KeyVersion < 1):
		return fmt.Errorf("audit record: the %s of a key names one key and its version", r.Decision)
	case r.Decision.KeyChange():
	case r.Decision != Allow && r.Decision != Deny:
		return fmt.Errorf("audit record: decision %q is neither %q nor %q", r.Decision, Allow, Deny)
	case r.KeyVersion != 0:
		return fmt.Errorf("audit record: a provisioning decision has no key version")
	}
	type field struct{ name, hex string }
	hexes := []field{{"mrenclave", r.MREnclave}, {"mrsigner", r.MRSigner}, {"mrtd", r.MRTD}, {"measurement", r.Measurement}, {"manifest", r.Manifest}}
	for i, h := range r.RTMRs {
		hexes = append(hexes, field{fmt.Sprintf("rtmr%d", i), h})
	}
	for _, f := range hexes {
		if strings.Trim(f.hex, "0123456789abcdef") != "" || len(f.hex)%2 != 0 {
			return fmt.Errorf("audit record: %s %q is not lower-case hex", f.name, f.hex)
		}
	}
	return nil
}
