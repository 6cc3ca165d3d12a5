package store

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"testing"
	"time"
)

// FuzzVerifyAudit gives VerifyAudit's reading of the database (scanAudit for the audit table, the
// checkpoints as stored) a log of five records (record versions 1, 2 and 3: the last a key's
// rotation) and a checkpoint of the third that signs the key's state, one of whose columns someone who can write the database set to the fuzzer's bytes, and
// may replace the checkpoint's signature and hash. Reading and verifying never panic, and a log
// that verifies holds records whose content is the one that was chained.
func FuzzVerifyAudit(f *testing.F) {
	key := testSigner(f)
	batch := make([]*pendingRecord, 4)
	for i := range batch {
		batch[i] = &pendingRecord{r: sampleRecord(i)}
	}
	batch = append(batch, &pendingRecord{r: keyRecord(KeyRotate, "default", 2)})
	chain(0, nil, batch)
	var rows [][]any
	for _, p := range batch {
		rows = append(rows, auditArgs(&p.r))
	}
	ckpt := Checkpoint{ID: 1, Time: time.Unix(1, 0).UTC(), RecordID: 3, RecordHash: batch[2].r.Hash,
		Keys: KeyStates{"default": {Version: 1}, "old": {Version: 3, Deleted: true}}}
	ckpt.Signer, _ = KeyID(key.Public())
	head, _ := hex.DecodeString(ckpt.RecordHash)
	digest := sha256.Sum256(checkpointMessage(&ckpt, head))
	ckpt.Signature, _ = ecdsa.SignASN1(rand.Reader, key, digest[:])
	keys := []crypto.PublicKey{key.Public()}

	columns := len(rows[0])
	f.Add(uint8(0), uint8(columns), []byte(nil), []byte(nil), []byte(nil)) // as written: it verifies
	f.Add(uint8(1), uint8(10), []byte(`["00",""]`), []byte(nil), []byte(nil))
	f.Add(uint8(3), uint8(20), []byte(`null`), []byte(nil), []byte(nil))
	f.Add(uint8(1), uint8(25), []byte{0, 0, 1, 0}, []byte(nil), []byte(nil))
	f.Add(uint8(2), uint8(19), bytes.Repeat([]byte{1}, 32), ckpt.Signature[1:], head[:31])
	f.Fuzz(func(t *testing.T, row, column uint8, value, signature, recordHash []byte) {
		tampered := slices.Clone(rows)
		at, col := int(row)%len(rows), int(column)%(columns+1)
		if col < columns {
			tampered[at] = slices.Clone(rows[at])
			tampered[at][col] = fuzzValue(rows[at][col], value)
		}
		c := ckpt
		if len(signature) > 0 {
			c.Signature = signature
		}
		if len(recordHash) > 0 {
			c.RecordHash = hex.EncodeToString(recordHash)
		}
		var read []AuditRecord
		records := func(yield func(AuditRecord, error) bool) {
			for _, row := range tampered {
				r, err := scanAudit(scanRow(row))
				read = append(read, r)
				if !yield(r, err) || err != nil {
					return
				}
			}
		}
		checkpoints := func(yield func(Checkpoint, error) bool) { yield(c, nil) }
		current := KeyStates{"default": {Version: 2}, "old": {Version: 3, Deleted: true}}
		if _, err := verifyAudit(checkpoints, records, keys, nil, current); err != nil {
			if col == columns && len(signature)+len(recordHash) == 0 {
				t.Fatalf("the log as written does not verify: %v", err)
			}
			return
		}
		for i, r := range read {
			if want := batch[i].r; r.ID != want.ID || !bytes.Equal(r.canonical(nil, nil), want.canonical(nil, nil)) {
				t.Fatalf("record %d verifies with content %+v, chained as %+v", want.ID, r, want)
			}
		}
	})
}

// fuzzValue makes a column value of the type of was from b, as a database column holds any.
func fuzzValue(was any, b []byte) any {
	n := int64(binary.BigEndian.Uint64(append(make([]byte, 8), b...)[len(b):]))
	switch was.(type) {
	case string:
		return string(b)
	case []byte:
		return b
	case bool:
		return n%2 == 1
	case int:
		return int(n)
	case int64:
		return n
	case *int32:
		if len(b) == 0 {
			return (*int32)(nil)
		}
		return new(int32(n))
	case *int64:
		if len(b) == 0 {
			return (*int64)(nil)
		}
		return new(n)
	}
	panic(fmt.Sprintf("column of type %T", was))
}

// scanRow returns a scan function, as sql.Rows.Scan, that reads the values of row.
func scanRow(row []any) func(...any) error {
	return func(dest ...any) error {
		if len(dest) != len(row) {
			return fmt.Errorf("%d columns, %d destinations", len(row), len(dest))
		}
		for i, d := range dest {
			switch d := d.(type) {
			case *string:
				*d = row[i].(string)
			case *[]byte:
				*d = row[i].([]byte)
			case *bool:
				*d = row[i].(bool)
			case *int:
				*d = row[i].(int)
			case *int64:
				*d = row[i].(int64)
			case **int32:
				*d = row[i].(*int32)
			case **int64:
				*d = row[i].(*int64)
			default:
				return fmt.Errorf("column %d: destination %T", i, d)
			}
		}
		return nil
	}
}
