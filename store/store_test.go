package store

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ppml/ppml/internal/pgtest"
)

var ctx = context.Background()

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// backend makes stores of one kind: the tests that take one are the contract every backend
// keeps, and run against each.
type backend struct {
	name string
	// newDSN returns the data source name of a new, empty store.
	newDSN func(t testing.TB) string
	// raw opens a store's database directly, as someone with access to it could.
	raw func(dsn string) (*sql.DB, error)
}

var (
	sqliteBackend = backend{
		name:   "sqlite",
		newDSN: func(t testing.TB) string { return "sqlite:" + filepath.Join(t.TempDir(), "ppml.db") },
		raw: func(dsn string) (*sql.DB, error) {
			return sql.Open("sqlite", strings.TrimPrefix(dsn, "sqlite:")+"?_pragma=busy_timeout(10000)")
		},
	}
	postgresBackend = backend{
		name:   "postgres",
		newDSN: func(t testing.TB) string { return pgtest.Shared(t).NewDatabase(t) },
		raw:    func(dsn string) (*sql.DB, error) { return sql.Open("pgx", dsn) },
	}
)

// forEachBackend runs test against each backend, as a subtest named after it.
func forEachBackend(t *testing.T, test func(*testing.T, backend)) {
	for _, b := range []backend{sqliteBackend, postgresBackend} {
		t.Run(b.name, func(t *testing.T) { test(t, b) })
	}
}

// masterKey returns a test master key made of b.
func masterKey(b byte) []byte { return bytes.Repeat([]byte{b}, MasterKeySize) }

func openAt(t testing.TB, dsn string, mk []byte) Store {
	t.Helper()
	s, err := Open(dsn, mk)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

// newStore opens a new store and returns it with its data source name.
func newStore(t testing.TB, b backend) (Store, string) {
	t.Helper()
	dsn := b.newDSN(t)
	s := openAt(t, dsn, masterKey(1))
	t.Cleanup(func() { s.Close() })
	return s, dsn
}

// rawDB opens the store's database directly, as someone with access to it could.
func rawDB(t *testing.T, b backend, dsn string) *sql.DB {
	t.Helper()
	db, err := b.raw(dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func exec(t *testing.T, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func mustKey(t *testing.T, s Store, name string, version int) []byte {
	t.Helper()
	k, _, err := s.Key(ctx, name, version)
	if err != nil {
		t.Fatalf("Key(%q, %d): %v", name, version, err)
	}
	if len(k) != KeySize {
		t.Fatalf("Key(%q, %d) is %d bytes", name, version, len(k))
	}
	return k
}

func wantErr(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error %v, want %v", err, target)
	}
}

func TestKeyLifecycle(t *testing.T) { forEachBackend(t, testKeyLifecycle) }

func testKeyLifecycle(t *testing.T, b backend) {
	s, dsn := newStore(t, b)
	start := time.Now()

	a, err := s.CreateKey(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if a.Name != "a" || a.Version != 1 || a.Created.Before(start) || !a.Rotated.IsZero() {
		t.Errorf("CreateKey: %+v", a)
	}
	imported := []byte("0123456789abcdef")
	if _, err := s.ImportKey(ctx, "b", imported); err != nil {
		t.Fatal(err)
	}
	if got := mustKey(t, s, "b", Current); !bytes.Equal(got, imported) {
		t.Errorf("imported key reads back as %x", got)
	}
	a1 := mustKey(t, s, "a", Current)
	if bytes.Equal(a1, make([]byte, KeySize)) {
		t.Error("created key is all zeros")
	}
	if !bytes.Equal(mustKey(t, s, "a", 1), a1) {
		t.Error("Key(a, 1) differs from Key(a, Current)")
	}

	_, err = s.CreateKey(ctx, "a")
	wantErr(t, err, ErrExists)
	_, err = s.ImportKey(ctx, "b", imported)
	wantErr(t, err, ErrExists)
	if _, err := s.ImportKey(ctx, "c", imported[:15]); err == nil || !strings.Contains(err.Error(), "15 bytes") {
		t.Errorf("importing 15 bytes: %v", err)
	}

	r, err := s.RotateKey(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if r.Version != 2 || !r.Created.Equal(a.Created) || r.Rotated.Before(r.Created) {
		t.Errorf("RotateKey: %+v (created as %+v)", r, a)
	}
	a2 := mustKey(t, s, "a", Current)
	if bytes.Equal(a1, a2) {
		t.Error("rotation kept the key bytes")
	}
	if !bytes.Equal(mustKey(t, s, "a", 1), a1) || !bytes.Equal(mustKey(t, s, "a", 2), a2) {
		t.Error("old or new version reads back wrong")
	}
	_, _, err = s.Key(ctx, "a", 3)
	wantErr(t, err, ErrNotFound)
	if _, _, err := s.Key(ctx, "a", -1); err == nil {
		t.Error("Key with version -1 succeeded")
	}

	list, err := s.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Name != "a" || list[0].Version != 2 || !list[0].Rotated.Equal(r.Rotated) ||
		!list[0].Created.Equal(a.Created) || list[1].Name != "b" || list[1].Version != 1 || !list[1].Rotated.IsZero() {
		t.Errorf("ListKeys: %+v", list)
	}

	if err := s.DeleteKey(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	for _, v := range []int{Current, 1, 2} {
		_, _, err := s.Key(ctx, "a", v)
		wantErr(t, err, ErrNotFound)
	}
	var n int
	if err := rawDB(t, b, dsn).QueryRow(`SELECT COUNT(*) FROM key_versions WHERE name = 'a'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("after delete, %d versions of a remain (%v)", n, err)
	}
	wantErr(t, s.DeleteKey(ctx, "a"), ErrNotFound)
	_, err = s.RotateKey(ctx, "a")
	wantErr(t, err, ErrNotFound)

	if got, err := s.KeyVersions(ctx); err != nil || !reflect.DeepEqual(got, KeyStates{"a": {Version: 2, Deleted: true}, "b": {Version: 1}}) {
		t.Errorf("after delete KeyVersions = %v, %v", got, err)
	}

	// The name can be used again, from the version after the deleted key's last one, so that no
	// version number names two keys.
	if k, err := s.CreateKey(ctx, "a"); err != nil || k.Version != 3 {
		t.Fatalf("recreate: %+v, %v", k, err)
	}
	if bytes.Equal(mustKey(t, s, "a", Current), a1) {
		t.Error("recreated key has the deleted key's bytes")
	}
	for _, v := range []int{1, 2} {
		_, _, err := s.Key(ctx, "a", v)
		wantErr(t, err, ErrNotFound)
	}
	if list, err := s.ListKeys(ctx); err != nil || list[0].Version != 3 || !list[0].Rotated.IsZero() {
		t.Errorf("after recreate ListKeys = %+v, %v", list, err)
	}
	if got, err := s.KeyVersions(ctx); err != nil || !reflect.DeepEqual(got, KeyStates{"a": {Version: 3}, "b": {Version: 1}}) {
		t.Errorf("after recreate KeyVersions = %v, %v", got, err)
	}

	// Each change is an audit record, in order.
	var changes []string
	for _, r := range collect(t, s, AuditFilter{}) {
		changes = append(changes, fmt.Sprintf("%s %s %d", r.Decision, r.Keys[0], r.KeyVersion))
	}
	want := []string{"key-create a 1", "key-import b 1", "key-rotate a 2", "key-delete a 2", "key-create a 3"}
	if !slices.Equal(changes, want) {
		t.Errorf("audit records %q, want %q", changes, want)
	}
}

func TestNames(t *testing.T) { forEachBackend(t, testNames) }

func testNames(t *testing.T, b backend) {
	s, _ := newStore(t, b)
	good := []string{"default", "a", "A9", "owner-1.model_v2", strings.Repeat("k", MaxNameLen)}
	bad := []string{"", "_sgx_mrenclave", ".hidden", "-x", "a b", "a/b", "ü", "a\x00", "a,b", strings.Repeat("k", MaxNameLen+1)}
	for _, name := range good {
		if err := CheckName(name); err != nil {
			t.Errorf("CheckName(%q): %v", name, err)
		}
		if _, err := s.CreateKey(ctx, name); err != nil {
			t.Errorf("CreateKey(%q): %v", name, err)
		}
	}
	for _, name := range bad {
		wantErr(t, CheckName(name), ErrInvalidName)
		_, err := s.CreateKey(ctx, name)
		wantErr(t, err, ErrInvalidName)
		_, err = s.ImportKey(ctx, name, make([]byte, KeySize))
		wantErr(t, err, ErrInvalidName)
		_, _, err = s.Key(ctx, name, Current)
		wantErr(t, err, ErrInvalidName)
		_, err = s.RotateKey(ctx, name)
		wantErr(t, err, ErrInvalidName)
		wantErr(t, s.DeleteKey(ctx, name), ErrInvalidName)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []int{0, 16, 31, 33} {
		if _, err := Open("sqlite:"+filepath.Join(dir, "x.db"), make([]byte, n)); err == nil || !strings.Contains(err.Error(), "exactly 32") {
			t.Errorf("master key of %d bytes: %v", n, err)
		}
	}
	// Nothing listens there: the error names the database, not the password.
	_, err := Open("postgres://ppml:hunter2@127.0.0.1:1/ppml?connect_timeout=5", masterKey(1))
	if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "ppml@127.0.0.1:1/ppml") {
		t.Errorf("Open of an unreachable PostgreSQL: %v", err)
	}
	if _, err := Open("postgres://ppml:hunter2@127.0.0.1:1/ppml?sslmode=bogus", masterKey(1)); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("Open of a malformed PostgreSQL URL: %v", err)
	}
	for _, dsn := range []string{"sqlite:", "mysql:x", filepath.Join(dir, "x.db"), "sqlite:" + filepath.Join(dir, "missing", "x.db")} {
		if _, err := Open(dsn, masterKey(1)); err == nil {
			t.Errorf("Open(%q) succeeded", dsn)
		}
	}
	notDB := filepath.Join(dir, "text")
	os.WriteFile(notDB, bytes.Repeat([]byte("not a database\n"), 100), 0o600)
	if _, err := Open("sqlite:"+notDB, masterKey(1)); err == nil || !strings.Contains(err.Error(), notDB) {
		t.Errorf("Open of a text file: %v", err)
	}
}

func TestWrongMasterKey(t *testing.T) { forEachBackend(t, testWrongMasterKey) }

func testWrongMasterKey(t *testing.T, b backend) {
	dsn := b.newDSN(t)
	s := openAt(t, dsn, masterKey(1))
	if _, err := s.CreateKey(ctx, "default"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err := Open(dsn, masterKey(2))
	wantErr(t, err, ErrWrongMasterKey)
	s = openAt(t, dsn, masterKey(1))
	defer s.Close()
	mustKey(t, s, "default", Current)
}

func TestSchemaTooNew(t *testing.T) { forEachBackend(t, testSchemaTooNew) }

func testSchemaTooNew(t *testing.T, b backend) {
	s, dsn := newStore(t, b)
	s.Close()
	exec(t, rawDB(t, b, dsn), `INSERT INTO schema_version (version, applied_ns) VALUES (99, 0)`)
	if _, err := Open(dsn, masterKey(1)); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Errorf("Open of a newer schema: %v", err)
	}
}

func TestTamperedKey(t *testing.T) { forEachBackend(t, testTamperedKey) }

func testTamperedKey(t *testing.T, b backend) {
	s, dsn := newStore(t, b)
	if _, err := s.CreateKey(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	db := rawDB(t, b, dsn)
	var sealed []byte
	if err := db.QueryRow(`SELECT sealed FROM key_versions WHERE name = 'a'`).Scan(&sealed); err != nil {
		t.Fatal(err)
	}
	if len(sealed) != 12+KeySize+16 {
		t.Errorf("sealed key is %d bytes", len(sealed))
	}
	sealed[20] ^= 1
	exec(t, db, `UPDATE key_versions SET sealed = $1 WHERE name = 'a'`, sealed)
	_, _, err := s.Key(ctx, "a", Current)
	wantErr(t, err, ErrTampered)
	if !strings.Contains(err.Error(), `"a"`) {
		t.Errorf("error does not name the key: %v", err)
	}
}

func TestSwappedRows(t *testing.T) { forEachBackend(t, testSwappedRows) }

func testSwappedRows(t *testing.T, b backend) {
	s, dsn := newStore(t, b)
	for _, name := range []string{"a", "b", "c"} {
		if _, err := s.CreateKey(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.RotateKey(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	db := rawDB(t, b, dsn)
	// Swap the sealed keys of a and b.
	var sa, sb []byte
	if err := db.QueryRow(`SELECT a.sealed, b.sealed FROM key_versions a, key_versions b
		WHERE a.name = 'a' AND b.name = 'b'`).Scan(&sa, &sb); err != nil {
		t.Fatal(err)
	}
	exec(t, db, `UPDATE key_versions SET sealed = $1 WHERE name = 'a'`, sb)
	exec(t, db, `UPDATE key_versions SET sealed = $1 WHERE name = 'b'`, sa)
	// Present version 2 of c as its version 1.
	exec(t, db, `UPDATE key_versions SET sealed = (SELECT sealed FROM key_versions WHERE name = 'c' AND version = 2)
		WHERE name = 'c' AND version = 1`)
	for _, k := range []struct {
		name    string
		version int
	}{{"a", Current}, {"b", Current}, {"c", 1}} {
		_, _, err := s.Key(ctx, k.name, k.version)
		wantErr(t, err, ErrTampered)
	}
	mustKey(t, s, "c", 2)
}

func TestRestart(t *testing.T) { forEachBackend(t, testRestart) }

func testRestart(t *testing.T, b backend) {
	dsn := b.newDSN(t)
	s := openAt(t, dsn, masterKey(1))
	want := map[string][]byte{}
	for _, name := range []string{"x", "y"} {
		if _, err := s.CreateKey(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.RotateKey(ctx, "y"); err != nil {
		t.Fatal(err)
	}
	want["x"] = mustKey(t, s, "x", Current)
	want["y1"] = mustKey(t, s, "y", 1)
	want["y2"] = mustKey(t, s, "y", 2)
	listed, err := s.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var records []AuditRecord
	for i := range 5 {
		r := sampleRecord(i)
		if r.ID, err = s.AppendAudit(ctx, r); err != nil {
			t.Fatal(err)
		}
		records = append(records, r)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openAt(t, dsn, masterKey(1))
	defer s.Close()
	if l, err := s.ListKeys(ctx); err != nil || !reflect.DeepEqual(l, listed) {
		t.Errorf("after restart ListKeys = %+v, %v; want %+v", l, err, listed)
	}
	for name, k := range map[string][]byte{"x": mustKey(t, s, "x", Current), "y1": mustKey(t, s, "y", 1), "y2": mustKey(t, s, "y", Current)} {
		if !bytes.Equal(k, want[name]) {
			t.Errorf("after restart %s differs", name)
		}
	}
	got := collect(t, s, AuditFilter{})
	if len(got) < 3 || got[0].Decision != KeyCreate || got[2].Decision != KeyRotate || got[2].KeyVersion != 2 {
		t.Fatalf("after restart the key changes are %+v", got)
	}
	if got = got[3:]; !reflect.DeepEqual(content(got), records) {
		t.Errorf("after restart the audit log is\n%+v\nwant\n%+v", got, records)
	}
}

// TestAtRest checks that key bytes are nowhere in the store's files and that the files are the
// owner's only.
func TestAtRest(t *testing.T) {
	s, dsn := newStore(t, sqliteBackend)
	path := strings.TrimPrefix(dsn, "sqlite:")
	key := []byte("\xde\xad\xbe\xefPLAINTEXT-KY")
	if _, err := s.ImportKey(ctx, "secret", key); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RotateKey(ctx, "secret"); err != nil {
		t.Fatal(err)
	}
	newKey := mustKey(t, s, "secret", Current)
	if err := s.DeleteKey(ctx, "secret"); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(path + "*")
	if len(files) < 2 {
		t.Errorf("expected the database and its WAL, found %v", files)
	}
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v", f, fi.Mode())
		}
		b, _ := os.ReadFile(f)
		if bytes.Contains(b, key) || bytes.Contains(b, newKey) {
			t.Errorf("%s holds key bytes in the clear", f)
		}
	}
}

func sampleRecord(i int) AuditRecord {
	prod, svn := uint16(i), uint16(2*i)
	r := AuditRecord{
		Time:      time.Date(2025, 1, 1, 0, i, 0, 123, time.UTC),
		Peer:      fmt.Sprintf("192.0.2.%d:4433", i),
		TEE:       "sgx",
		Platform:  "simulated",
		MREnclave: strings.Repeat("ab", 32),
		MRSigner:  strings.Repeat("cd", 32),
		ISVProdID: &prod,
		ISVSVN:    &svn,
		TCBStatus: "UpToDate",
		Workload:  "pytorch",
		Keys:      []string{"default", "model"},
		Decision:  Allow,
		GPUs: []GPURecord{{Platform: "simulated", Arch: "Hopper", DriverVersion: "550.90.07", VBIOSVersion: "96.00.9f.00.01",
			FWID: strings.Repeat("f1", 48), Measurements: "mismatch", Mismatched: []int{5}, Revocation: "unchecked"}},
	}
	if i%2 == 1 {
		r = AuditRecord{
			Time:        r.Time,
			Peer:        r.Peer,
			TEE:         "tdx",
			MRTD:        strings.Repeat("ef", 48),
			RTMRs:       []string{strings.Repeat("01", 48), ""},
			Measurement: "",
			TCBStatus:   "OutOfDate",
			Debug:       true,
			Manifest:    strings.Repeat("5a", 32),
			Decision:    Deny,
			Reason:      "TCB status OutOfDate is not accepted",
			// What the status rests on: the fields of record version 2.
			AdvisoryIDs:             []string{"INTEL-SA-01036", "INTEL-SA-01099"},
			TCBDate:                 new(time.Date(2024, 3, 13, 0, 0, 0, 0, time.UTC)),
			TCBEvaluationDataNumber: 18,
			QEStatus:                "UpToDate",
			TDXModule:               &TDXModule{ID: "TDX_01", ISVSVN: uint8(i), Status: "OutOfDate"},
		}
	}
	return r
}

// content returns rs without the chain's hashes, which the store sets.
func content(rs []AuditRecord) []AuditRecord {
	out := slices.Clone(rs)
	for i := range out {
		out[i].PrevHash, out[i].Hash = "", ""
	}
	return out
}

func collect(t *testing.T, s Store, f AuditFilter) []AuditRecord {
	t.Helper()
	var rs []AuditRecord
	for r, err := range s.AuditRecords(ctx, f) {
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, r)
	}
	return rs
}

func TestAuditRoundTrip(t *testing.T) { forEachBackend(t, testAuditRoundTrip) }

func testAuditRoundTrip(t *testing.T, b backend) {
	s, _ := newStore(t, b)
	for i := range 2 {
		r := sampleRecord(i)
		id, err := s.AppendAudit(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		r.ID = id
		got := collect(t, s, AuditFilter{After: id - 1})
		if len(got) != 1 || !reflect.DeepEqual(content(got), []AuditRecord{r}) {
			t.Errorf("read back\n%+v\nwant\n%+v", got, r)
		}
	}

	before := time.Now()
	if _, err := s.AppendAudit(ctx, AuditRecord{Peer: "p", Decision: Deny, Reason: "no certificate"}); err != nil {
		t.Fatal(err)
	}
	last := collect(t, s, AuditFilter{Limit: 1, Tail: true})
	if len(last) != 1 || last[0].Time.Before(before) || last[0].Time.After(time.Now()) || last[0].Keys != nil || last[0].ISVSVN != nil {
		t.Errorf("record with zero time reads back as %+v", last)
	}
}

func TestAuditInvalid(t *testing.T) { forEachBackend(t, testAuditInvalid) }

func testAuditInvalid(t *testing.T, b backend) {
	s, _ := newStore(t, b)
	for _, r := range []AuditRecord{
		{},
		{Decision: "maybe"},
		{Decision: Allow, MREnclave: "ABCD"},
		{Decision: Allow, MRSigner: "abc"},
		{Decision: Deny, MRTD: "xyz0"},
		{Decision: Deny, RTMRs: []string{"00", "0g"}},
		{Decision: Deny, Measurement: "00 11"},
	} {
		if _, err := s.AppendAudit(ctx, r); err == nil {
			t.Errorf("AppendAudit(%+v) succeeded", r)
		}
	}
	if got := collect(t, s, AuditFilter{}); len(got) != 0 {
		t.Errorf("invalid records were stored: %+v", got)
	}
}

// TestAuditInvalidInOrder checks that with several fields invalid, the error names the first of
// them, always the same one.
func TestAuditInvalidInOrder(t *testing.T) {
	r := AuditRecord{Decision: Deny, MREnclave: "00", MRSigner: "abc", MRTD: "xyz0", Measurement: "00 11", RTMRs: []string{"0g", "zz"}}
	want := `audit record: mrsigner "abc" is not lower-case hex`
	if err := r.check(); err == nil || err.Error() != want {
		t.Errorf("error %v, want %q", err, want)
	}
}

func TestAuditFilters(t *testing.T) { forEachBackend(t, testAuditFilters) }

func testAuditFilters(t *testing.T, b backend) {
	s, _ := newStore(t, b)
	var ids []int64
	for i := range 10 {
		id, err := s.AppendAudit(ctx, sampleRecord(i))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	for i := 1; i < len(ids); i++ {
		if ids[i] <= ids[i-1] {
			t.Fatalf("IDs do not increase: %v", ids)
		}
	}
	at := func(i int) time.Time { return sampleRecord(i).Time }
	for _, c := range []struct {
		f    AuditFilter
		want []int64
	}{
		{AuditFilter{}, ids},
		{AuditFilter{Since: at(6)}, ids[6:]},
		{AuditFilter{Since: at(6).Add(time.Nanosecond)}, ids[7:]},
		{AuditFilter{After: ids[2]}, ids[3:]},
		{AuditFilter{Limit: 3}, ids[:3]},
		{AuditFilter{Limit: 3, Tail: true}, ids[7:]},
		{AuditFilter{Tail: true}, ids},
		{AuditFilter{Since: at(2), Limit: 2}, ids[2:4]},
		{AuditFilter{After: ids[1], Since: at(5), Limit: 20, Tail: true}, ids[5:]},
		{AuditFilter{Since: at(99)}, nil},
	} {
		var got []int64
		for _, r := range collect(t, s, c.f) {
			got = append(got, r.ID)
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%+v: IDs %v, want %v", c.f, got, c.want)
		}
	}

	// Stopping early, and writing while a read is under way.
	n := 0
	for _, err := range s.AuditRecords(ctx, AuditFilter{}) {
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.AppendAudit(ctx, sampleRecord(n)); err != nil {
			t.Fatal(err)
		}
		if n++; n == 3 {
			break
		}
	}
	if got := len(collect(t, s, AuditFilter{})); got != 13 {
		t.Errorf("%d records, want 13", got)
	}

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	for _, err := range s.AuditRecords(cancelled, AuditFilter{}) {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled read: %v", err)
		}
	}
}

// TestConcurrent appends audit records, reads and rotates keys from many goroutines, and
// creates keys through a second handle on the same file, as a `ppml key` command would while
// the server runs.
func TestConcurrent(t *testing.T) { forEachBackend(t, testConcurrent) }

func testConcurrent(t *testing.T, b backend) {
	s, dsn := newStore(t, b)
	other := openAt(t, dsn, masterKey(1))
	defer other.Close()
	if _, err := s.CreateKey(ctx, "default"); err != nil {
		t.Fatal(err)
	}
	const writers, perWriter, readers, perReader = 8, 40, 4, 100
	var wg sync.WaitGroup
	errs := make(chan error, writers+readers+2)
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				r := sampleRecord(i)
				r.Peer = fmt.Sprintf("writer %d", w)
				if _, err := s.AppendAudit(ctx, r); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for range readers {
		wg.Go(func() {
			for range perReader {
				if _, _, err := s.Key(ctx, "default", Current); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Go(func() {
		for range 20 {
			if _, err := s.RotateKey(ctx, "default"); err != nil {
				errs <- err
				return
			}
		}
	})
	wg.Go(func() {
		for i := range 20 {
			if _, err := other.CreateKey(ctx, fmt.Sprintf("other-%d", i)); err != nil {
				errs <- err
				return
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	records := collect(t, s, AuditFilter{})
	if want := writers*perWriter + 41; len(records) != want { // and the key changes
		t.Errorf("%d audit records, want %d", len(records), want)
	}
	next := map[string]int{} // each writer's records in its order
	for i, r := range records {
		if i > 0 && r.ID <= records[i-1].ID {
			t.Fatalf("record %d has ID %d after %d", i, r.ID, records[i-1].ID)
		}
		if r.Decision.KeyChange() {
			continue
		}
		if want := sampleRecord(next[r.Peer]).Time; !r.Time.Equal(want) {
			t.Fatalf("%s: record at %v, want %v", r.Peer, r.Time, want)
		}
		next[r.Peer]++
	}
	list, err := s.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 21 || list[0].Name != "default" || list[0].Version != 21 {
		t.Errorf("ListKeys: %d keys, first %+v", len(list), list[0])
	}
}

func TestSettings(t *testing.T) {
	s, _ := newStore(t, sqliteBackend)
	ss := s.(*sqliteStore)
	for _, c := range []struct {
		db     *sql.DB
		pragma string
		want   string
	}{
		{ss.w, "journal_mode", "wal"},
		{ss.w, "synchronous", "2"}, // FULL
		{ss.w, "foreign_keys", "1"},
		{ss.w, "busy_timeout", "10000"},
		{ss.w, "secure_delete", "1"},
		{ss.w, "wal_autocheckpoint", "0"},
		{ss.r, "query_only", "1"},
		{ss.r, "busy_timeout", "10000"},
	} {
		var got string
		if err := c.db.QueryRow("PRAGMA " + c.pragma).Scan(&got); err != nil || got != c.want {
			t.Errorf("PRAGMA %s = %q, %v; want %q", c.pragma, got, err, c.want)
		}
	}
}

// TestBackgroundCheckpoint checks that what the writer commits reaches the database file
// without a checkpoint by the writer: the store's own checkpointer copies it there.
func TestBackgroundCheckpoint(t *testing.T) {
	s, dsn := newStore(t, sqliteBackend)
	path := strings.TrimPrefix(dsn, "sqlite:")
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	before := st.Size()
	for i := range 200 {
		r := AuditRecord{Peer: fmt.Sprintf("10.0.0.%d:443", i), TEE: "sgx", Decision: Deny, Reason: strings.Repeat("refused ", 20)}
		if _, err := s.AppendAudit(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * checkpointEvery)
	for {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() > before {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the database file is still %d bytes after %s: nothing was checkpointed", st.Size(), 5*checkpointEvery)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestAuditRef: a record's reference is the same for every store opened with the same master
// key, differs from record to record, and is another under another master key. (serve.txtar
// checks the references of a known master key, computed apart.)
func TestAuditRef(t *testing.T) { forEachBackend(t, testAuditRef) }

func testAuditRef(t *testing.T, b backend) {
	s, dsn := newStore(t, b)
	seen := map[string]bool{}
	for id := int64(1); id <= 1000; id++ {
		ref := s.AuditRef(id)
		if len(ref) != 12 || seen[ref] {
			t.Fatalf("reference %q of record %d: not 12 hex digits, or seen before", ref, id)
		}
		seen[ref] = true
	}
	s.Close()
	again := openAt(t, dsn, masterKey(1))
	defer again.Close()
	if again.AuditRef(7) != s.AuditRef(7) {
		t.Error("the reference of a record changed when the store was opened again")
	}
	other, _ := func() (Store, string) {
		p := b.newDSN(t)
		o := openAt(t, p, masterKey(2))
		t.Cleanup(func() { o.Close() })
		return o, p
	}()
	if other.AuditRef(7) == s.AuditRef(7) {
		t.Error("the same reference under another master key")
	}
}
