package store

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"iter"
	"maps"
	"slices"
	"time"
)

// The audit chain. Each record's hash is SHA-256 over its canonical encoding, which begins with
// the hash of the record before it; the first record of a chain follows 32 zero bytes. The
// canonical encoding has versions; a record is encoded in the first version that holds all it
// says, so that records written before a version existed still verify, and a record is never
// encoded in two ways (the label differs). Version 1 is, in this order:
//
//	"ppml audit record v1\x00"         label (21 bytes)
//	prev_hash                          32 bytes
//	id                                 uint64, big-endian
//	time                               int64, big-endian: nanoseconds since 1970-01-01 UTC
//	peer, tee, platform,
//	mrenclave, mrsigner                each a string
//	isv_prod_id, isv_svn               each an optional uint16
//	mrtd                               string
//	rtmrs                              list of strings
//	measurement, tcb_status            strings
//	debug                              one byte, 0 or 1
//	workload                           string
//	keys                               list of strings
//	decision, reason                   strings
//
// Version 2 is for records with a workload measurement (manifest), GPUs, or any of what a TCB
// status rests on (advisory IDs, TCB date, TCB evaluation data number, QE status, TDX module). It
// is version 1 with the label "ppml audit record v2\x00", followed by:
//
//	manifest                           string
//	gpus                               string: JSON of the GPUs' records, or "null"
//	advisory_ids                       list of strings
//	tcb_date                           optional int64: nanoseconds since 1970-01-01 UTC
//	tcb_evaluation_data_number         int64, big-endian
//	qe_status                          string
//	tdx_module                         the byte 0 when absent, or the byte 1, its id (string),
//	                                   ISVSVN (one byte) and status (string)
//
// Version 3 is for the records of a key's change (KeyCreate, ...). It is version 2 with the label
// "ppml audit record v3\x00", followed by:
//
//	key_version                        uint64, big-endian
//
// A string is its length in bytes (uint32, big-endian) and its bytes; an optional uint16 is the
// byte 0 when absent, or the byte 1 and the value (big-endian); a list is its number of items
// (uint32, big-endian) and each item, so that an absent list and an empty one encode alike; an
// optional int64 is the byte 0 when absent, or the byte 1 and the value (big-endian).
//
// A checkpoint signs the chain's head: the signed message is
//
//	"ppml audit checkpoint v1\x00" ‖ record id (uint64) ‖ record hash (32 bytes) ‖ time (int64 ns)
//
// and, when it also signs the state of keys (Checkpoint.Keys), the signed message is
//
//	"ppml audit checkpoint v2\x00" ‖ record id ‖ record hash ‖ time ‖ number of keys (uint32) ‖
//	for each key, by name in byte order: name (string) ‖ version (uint64) ‖ deleted (one byte)
//
// with the server's TLS key: ECDSA over its SHA-256 (ASN.1 signature), Ed25519 over the message
// itself, or RSA-PSS with SHA-256.
const (
	recordLabel     = "ppml audit record v1\x00"
	recordLabelV2   = "ppml audit record v2\x00"
	recordLabelV3   = "ppml audit record v3\x00"
	checkpointLabel = "ppml audit checkpoint v1\x00"
	keysLabel       = "ppml audit checkpoint v2\x00"
	hashSize        = sha256.Size
)

// Checkpoint is a server's signature over the head of the audit chain at a time: whoever has
// the signer's public key can tell that no record up to RecordID was changed, deleted or
// inserted since.
type Checkpoint struct {
	ID         int64     `json:"id"` // assigned by the store
	Time       time.Time `json:"time"`
	RecordID   int64     `json:"record_id"`   // the head of the chain
	RecordHash string    `json:"record_hash"` // its hash, hex
	Signer     string    `json:"signer"`      // SHA-256 of the signer's public key (PKIX DER), hex
	Signature  []byte    `json:"signature"`
	// Keys is the state of every key at the head that the signing server knew of: the store's,
	// raised to the versions the server itself had seen, so that a rollback before the
	// checkpoint does not lower it. Checkpoints made before ppml signed keys have none.
	Keys KeyStates `json:"keys,omitempty"`
}

// canonical appends the canonical encoding of r to b, for hashing.
func (r *AuditRecord) canonical(b []byte, prev []byte) []byte {
	str := func(s string) {
		b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	opt := func(v *uint16) {
		if v == nil {
			b = append(b, 0)
			return
		}
		b = binary.BigEndian.AppendUint16(append(b, 1), *v)
	}
	list := func(l []string) {
		b = binary.BigEndian.AppendUint32(b, uint32(len(l)))
		for _, s := range l {
			str(s)
		}
	}
	v3 := r.KeyVersion != 0
	v2 := v3 || r.Manifest != "" || len(r.GPUs) > 0 || len(r.AdvisoryIDs) > 0 || r.TCBDate != nil ||
		r.TCBEvaluationDataNumber != 0 || r.QEStatus != "" || r.TDXModule != nil
	switch {
	case v3:
		b = append(b, recordLabelV3...)
	case v2:
		b = append(b, recordLabelV2...)
	default:
		b = append(b, recordLabel...)
	}
	b = append(b, prev...)
	b = binary.BigEndian.AppendUint64(b, uint64(r.ID))
	b = binary.BigEndian.AppendUint64(b, uint64(r.Time.UnixNano()))
	str(r.Peer)
	str(r.TEE)
	str(r.Platform)
	str(r.MREnclave)
	str(r.MRSigner)
	opt(r.ISVProdID)
	opt(r.ISVSVN)
	str(r.MRTD)
	list(r.RTMRs)
	str(r.Measurement)
	str(r.TCBStatus)
	debug := byte(0)
	if r.Debug {
		debug = 1
	}
	b = append(b, debug)
	str(r.Workload)
	list(r.Keys)
	str(string(r.Decision))
	str(r.Reason)
	if !v2 {
		return b
	}
	str(r.Manifest)
	gpus := []byte("null")
	if len(r.GPUs) > 0 {
		gpus, _ = json.Marshal(r.GPUs) // plain fields always marshal, in a fixed order
	}
	str(string(gpus))
	list(r.AdvisoryIDs)
	if r.TCBDate == nil {
		b = append(b, 0)
	} else {
		b = binary.BigEndian.AppendUint64(append(b, 1), uint64(r.TCBDate.UnixNano()))
	}
	b = binary.BigEndian.AppendUint64(b, uint64(int64(r.TCBEvaluationDataNumber)))
	str(r.QEStatus)
	if m := r.TDXModule; m == nil {
		b = append(b, 0)
	} else {
		b = append(b, 1)
		str(m.ID)
		b = append(b, m.ISVSVN)
		str(m.Status)
	}
	if v3 {
		b = binary.BigEndian.AppendUint64(b, uint64(int64(r.KeyVersion)))
	}
	return b
}

// chainHash returns the hash of r, with ID set, following the record whose hash is prev.
func (r *AuditRecord) chainHash(prev []byte) []byte {
	h := sha256.Sum256(r.canonical(nil, prev))
	return h[:]
}

// chain gives the records of batch, in order, the IDs and hashes that follow the chain's head
// (headID, headHash; headHash is nil when no record is chained yet).
func chain(headID int64, headHash []byte, batch []*pendingRecord) {
	prev := headHash
	if prev == nil {
		prev = make([]byte, hashSize)
	}
	for _, p := range batch {
		headID++
		p.r.ID = headID
		p.r.PrevHash = hex.EncodeToString(prev)
		prev = p.r.chainHash(prev)
		p.r.Hash = hex.EncodeToString(prev)
	}
}

// decodeHashes turns stored hashes (nil for a record from before the chain) into hex.
func decodeHashes(r *AuditRecord, prev, hash []byte) {
	if hash != nil {
		r.PrevHash, r.Hash = hex.EncodeToString(prev), hex.EncodeToString(hash)
	}
}

func checkpointMessage(c *Checkpoint, hash []byte) []byte {
	label := checkpointLabel
	if len(c.Keys) > 0 {
		label = keysLabel
	}
	m := append([]byte(label), binary.BigEndian.AppendUint64(nil, uint64(c.RecordID))...)
	m = append(m, hash...)
	m = binary.BigEndian.AppendUint64(m, uint64(c.Time.UnixNano()))
	if len(c.Keys) == 0 {
		return m
	}
	m = binary.BigEndian.AppendUint32(m, uint32(len(c.Keys)))
	for _, name := range slices.Sorted(maps.Keys(c.Keys)) {
		k := c.Keys[name]
		m = binary.BigEndian.AppendUint32(m, uint32(len(name)))
		m = append(m, name...)
		m = binary.BigEndian.AppendUint64(m, uint64(int64(k.Version)))
		deleted := byte(0)
		if k.Deleted {
			deleted = 1
		}
		m = append(m, deleted)
	}
	return m
}

// KeyID returns the hex SHA-256 of pub's PKIX DER encoding, which names a checkpoint's signer.
func KeyID(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("checkpoint key: %w", err)
	}
	id := sha256.Sum256(der)
	return hex.EncodeToString(id[:]), nil
}

// SignCheckpoint signs the head of st's audit chain with key and stores the checkpoint, with the
// state of st's keys raised to seen, the versions the signer saw itself (nil if none). With no
// record chained yet there is nothing to sign: it returns a zero Checkpoint.
func SignCheckpoint(ctx context.Context, st Store, key crypto.Signer, seen KeyStates) (Checkpoint, error) {
	keys, err := st.KeyVersions(ctx)
	if err != nil {
		return Checkpoint{}, err
	}
	keys.Raise(seen)
	id, head, err := st.AuditHead(ctx)
	if err != nil || id == 0 {
		return Checkpoint{}, err
	}
	hash, err := hex.DecodeString(head)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("audit head: %w", err)
	}
	c := Checkpoint{Time: time.Now().UTC(), RecordID: id, RecordHash: head, Keys: keys}
	if c.Signer, err = KeyID(key.Public()); err != nil {
		return Checkpoint{}, err
	}
	msg := checkpointMessage(&c, hash)
	var opts crypto.SignerOpts = crypto.SHA256
	switch key.Public().(type) {
	case ed25519.PublicKey:
		opts = crypto.Hash(0)
	case *rsa.PublicKey:
		opts = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}
	}
	if opts.HashFunc() != 0 {
		digest := sha256.Sum256(msg)
		msg = digest[:]
	}
	if c.Signature, err = key.Sign(rand.Reader, msg, opts); err != nil {
		return Checkpoint{}, fmt.Errorf("sign checkpoint: %w", err)
	}
	if c.ID, err = st.AddCheckpoint(ctx, c); err != nil {
		return Checkpoint{}, err
	}
	return c, nil
}

// verifySignature checks c's signature over hash with pub.
func verifySignature(pub crypto.PublicKey, c *Checkpoint, hash []byte) bool {
	msg := checkpointMessage(c, hash)
	digest := sha256.Sum256(msg)
	switch pub := pub.(type) {
	case *ecdsa.PublicKey:
		return ecdsa.VerifyASN1(pub, digest[:], c.Signature)
	case ed25519.PublicKey:
		return ed25519.Verify(pub, msg, c.Signature)
	case *rsa.PublicKey:
		return rsa.VerifyPSS(pub, crypto.SHA256, digest[:], c.Signature, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}) == nil
	}
	return false
}

// AuditReport sums up an audit log that VerifyAudit found whole.
type AuditReport struct {
	Records     int64      `json:"records"`   // in all
	Unchained   int64      `json:"unchained"` // from before the store had a chain
	Head        int64      `json:"head"`      // the ID of the newest record
	Checkpoints int        `json:"checkpoints"`
	Covered     int64      `json:"covered"`                   // the newest record a checkpoint signs
	LastSigned  *time.Time `json:"last_signed,omitempty"`     // when the newest checkpoint was made
	Unsigned    int64      `json:"unsigned_after_checkpoint"` // records after Covered
	Anchored    int        `json:"anchored"`                  // checkpoints of the checkpoint file, all in the database
	Keys        int        `json:"keys"`                      // keys whose version the checkpoints and records vouch for, none rolled back
}

// RollbackError is a key that the store holds at an older state than a signed checkpoint or an
// audit record says it reached: someone who can write the database rolled it back, to release
// an older version again.
type RollbackError struct {
	Key    string
	Store  *KeyState // nil when the store has no such key
	Want   KeyState
	Source string // what says Want: "checkpoint 3 (signed ...)", "audit record 7"
}

func (e *RollbackError) Error() string {
	if e.Store == nil {
		return fmt.Sprintf("key %q is missing from the store, but %s says it is at %s: it was rolled back or deleted by someone who can write the database (ppml key delete writes a record)", e.Key, e.Source, e.Want)
	}
	return fmt.Sprintf("key %q is at %s in the store, but %s says it is at %s: it was rolled back by someone who can write the database", e.Key, e.Store, e.Source, e.Want)
}

// ChainError is the first place where the audit log does not fit its chain or checkpoints.
type ChainError struct {
	Record     int64 // the record that does not fit; 0 if the fault is a checkpoint's alone
	Checkpoint int64 // the checkpoint involved, if any
	Reason     string
}

func (e *ChainError) Error() string {
	switch {
	case e.Record != 0 && e.Checkpoint != 0:
		return fmt.Sprintf("audit record %d does not fit checkpoint %d: %s", e.Record, e.Checkpoint, e.Reason)
	case e.Record != 0:
		return fmt.Sprintf("audit record %d does not fit the chain: %s", e.Record, e.Reason)
	}
	return fmt.Sprintf("audit checkpoint %d: %s", e.Checkpoint, e.Reason)
}

// VerifyAudit checks st's whole audit log: that each chained record's hash is that of its
// content and its predecessor's hash, with IDs that follow one another; that no record without
// a hash follows a chained one; and that every checkpoint is signed by one of keys and names a
// record that holds the hash it signed. Each of anchored, the checkpoints of a checkpoint file
// (ReadCheckpoints), must be signed so too, be in the database and be covered by the chain as
// the database's own: checkpoints deleted from the database, and the records they covered, are
// found. The error is a *ChainError naming the first record (or checkpoint) that does not fit.
// Last, the store's keys must be at the states that the checkpoints sign, or later ones that the
// records of key changes name: a key rolled back is a *RollbackError.
func VerifyAudit(ctx context.Context, st Store, keys []crypto.PublicKey, anchored []Checkpoint) (AuditReport, error) {
	current, err := st.KeyVersions(ctx)
	if err != nil {
		return AuditReport{}, err
	}
	return verifyAudit(st.Checkpoints(ctx), st.AuditRecords(ctx, AuditFilter{}), keys, anchored, current)
}

// verifyAudit checks the audit log of records and checkpoints, oldest first, and the current
// states of keys, as read from a database whose writers the verifier does not trust, as
// VerifyAudit says.
func verifyAudit(checkpoints iter.Seq2[Checkpoint, error], records iter.Seq2[AuditRecord, error], keys []crypto.PublicKey, anchored []Checkpoint, current KeyStates) (AuditReport, error) {
	var rep AuditReport
	trusted := map[string]crypto.PublicKey{}
	for _, k := range keys {
		id, err := KeyID(k)
		if err != nil {
			return rep, err
		}
		trusted[id] = k
	}
	check := func(c *Checkpoint) error {
		pub, ok := trusted[c.Signer]
		hash, herr := hex.DecodeString(c.RecordHash)
		switch {
		case !ok:
			return &ChainError{Checkpoint: c.ID, Reason: fmt.Sprintf("signed by key %s, which is not the server's (tls_cert) nor one given with --cert", c.Signer)}
		case herr != nil || len(hash) != hashSize || !verifySignature(pub, c, hash):
			return &ChainError{Checkpoint: c.ID, Reason: "its signature does not verify: it was altered"}
		}
		return nil
	}
	due := map[int64][]*Checkpoint{} // the checkpoints of each record, checked on reaching it
	want := wantedKeys{}             // the states the checkpoints and key records say keys reached
	inDB := map[string]bool{}        // the signatures of the database's checkpoints
	for c, err := range checkpoints {
		if err != nil {
			return rep, err
		}
		if err := check(&c); err != nil {
			return rep, err
		}
		inDB[string(c.Signature)] = true
		due[c.RecordID] = append(due[c.RecordID], &c)
		rep.Checkpoints++
		if c.RecordID > rep.Covered {
			rep.Covered = c.RecordID
		}
		if rep.LastSigned == nil || c.Time.After(*rep.LastSigned) {
			rep.LastSigned = &c.Time
		}
		for name, k := range c.Keys {
			want.raise(name, k, fmt.Sprintf("checkpoint %d (signed %s)", c.ID, c.Time.Format(time.RFC3339)))
		}
	}
	for _, c := range anchored {
		if err := check(&c); err != nil {
			return rep, err
		}
		if !inDB[string(c.Signature)] {
			return rep, &ChainError{Checkpoint: c.ID, Reason: fmt.Sprintf("it is in the checkpoint file (signed at %s, covering record %d) but not in the database: checkpoints were deleted", c.Time.Format(time.RFC3339), c.RecordID)}
		}
		rep.Anchored++
	}
	var prev []byte // the hash of the chain's last record so far; nil before the chain
	for r, err := range records {
		if err != nil {
			return rep, err
		}
		rep.Records++
		if r.Hash == "" {
			if prev != nil {
				return rep, &ChainError{Record: r.ID, Reason: fmt.Sprintf("it has no hash but follows chained record %d: it was inserted, or its hash removed", rep.Head)}
			}
			rep.Unchained++
			rep.Head = r.ID
			continue
		}
		stated, err1 := hex.DecodeString(r.PrevHash)
		hash, err2 := hex.DecodeString(r.Hash)
		if err1 != nil || err2 != nil {
			return rep, &ChainError{Record: r.ID, Reason: "its hashes are not hex"}
		}
		switch {
		case prev == nil && !bytes.Equal(stated, make([]byte, hashSize)):
			return rep, &ChainError{Record: r.ID, Reason: "it is the first chained record but names a predecessor: the records before it were deleted"}
		case prev != nil && r.ID != rep.Head+1:
			return rep, &ChainError{Record: r.ID, Reason: fmt.Sprintf("it follows record %d: records %d to %d were deleted", rep.Head, rep.Head+1, r.ID-1)}
		case prev != nil && !bytes.Equal(stated, prev):
			return rep, &ChainError{Record: r.ID, Reason: fmt.Sprintf("the predecessor hash it carries is not that of record %d: one of the two was changed, or it was inserted", rep.Head)}
		}
		if want := r.chainHash(stated); !bytes.Equal(hash, want) {
			return rep, &ChainError{Record: r.ID, Reason: "its content does not match its hash: it was changed"}
		}
		for _, c := range due[r.ID] {
			if c.RecordHash != r.Hash {
				return rep, &ChainError{Record: r.ID, Checkpoint: c.ID, Reason: fmt.Sprintf("the checkpoint signed at %s another hash: the records up to it were rewritten", c.Time.Format(time.RFC3339))}
			}
		}
		delete(due, r.ID)
		prev, rep.Head = hash, r.ID
		if r.Decision.KeyChange() && len(r.Keys) == 1 {
			want.raise(r.Keys[0], r.after(), fmt.Sprintf("audit record %d", r.ID))
		}
	}
	if len(due) > 0 {
		missing := slices.Min(slices.Collect(maps.Keys(due)))
		return rep, &ChainError{Record: missing, Checkpoint: due[missing][0].ID, Reason: "the checkpoint signs this record, which is missing: records were deleted"}
	}
	rep.Unsigned = rep.Records - rep.Unchained
	if rep.Covered > 0 {
		rep.Unsigned = rep.Head - rep.Covered
	}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		w := want[name]
		have, ok := current[name]
		switch {
		case !ok && !w.state.Deleted:
			return rep, &RollbackError{Key: name, Want: w.state, Source: w.source}
		case ok && have.Before(w.state):
			return rep, &RollbackError{Key: name, Store: &have, Want: w.state, Source: w.source}
		}
		rep.Keys++
	}
	return rep, nil
}

// wantedKeys are the states that keys must have reached, each with what says so.
type wantedKeys map[string]struct {
	state  KeyState
	source string
}

// raise raises the state of key name to k, said by source, if it is later.
func (w wantedKeys) raise(name string, k KeyState, source string) {
	if cur, ok := w[name]; !ok || cur.state.Before(k) {
		w[name] = struct {
			state  KeyState
			source string
		}{k, source}
	}
}
