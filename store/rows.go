package store

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
)

// The columns of an audit record and of a checkpoint, as both backends store them, in the order
// of auditArgs, scanAudit, checkpointArgs and scanCheckpoint. rtmrs, keys and advisory_ids are
// JSON (an array of strings, or null), and so are gpus (an array of GPURecord, or null) and a
// checkpoint's keys (an object of KeyState by name, or null); prev_hash
// and hash are NULL in records from before the chain; tcb_date_ns and tdx_module_svn are NULL
// where the evidence did not say.
const (
	auditColumns = `id, time_ns, peer, tee, platform, mrenclave, mrsigner, isv_prod_id, isv_svn, mrtd, rtmrs,
		measurement, tcb_status, debug, workload, keys, decision, reason, prev_hash, hash, gpus, manifest,
		advisory_ids, tcb_date_ns, tcb_evaluation_data_number, qe_status, tdx_module_id, tdx_module_svn, tdx_module_status,
		key_version`
	checkpointColumns = `time_ns, record_id, record_hash, signer, signature, keys`
)

// auditArgs returns the values of r's columns; chain has set its ID and hashes.
func auditArgs(r *AuditRecord) []any {
	rtmrs, _ := json.Marshal(r.RTMRs) // a []string always marshals
	keys, _ := json.Marshal(r.Keys)
	gpus, _ := json.Marshal(r.GPUs) // plain fields always marshal
	advisories, _ := json.Marshal(r.AdvisoryIDs)
	prev, _ := hex.DecodeString(r.PrevHash) // chain wrote them
	hash, _ := hex.DecodeString(r.Hash)
	var prodID, svn *int32
	if r.ISVProdID != nil {
		prodID = new(int32(*r.ISVProdID))
	}
	if r.ISVSVN != nil {
		svn = new(int32(*r.ISVSVN))
	}
	var tcbDate *int64
	if r.TCBDate != nil {
		tcbDate = new(r.TCBDate.UnixNano())
	}
	var module TDXModule
	var moduleSVN *int32
	if r.TDXModule != nil {
		module, moduleSVN = *r.TDXModule, new(int32(r.TDXModule.ISVSVN))
	}
	return []any{r.ID, r.Time.UnixNano(), r.Peer, r.TEE, r.Platform, r.MREnclave, r.MRSigner, prodID, svn,
		r.MRTD, string(rtmrs), r.Measurement, r.TCBStatus, r.Debug, r.Workload, string(keys), string(r.Decision),
		r.Reason, prev, hash, string(gpus), r.Manifest,
		string(advisories), tcbDate, r.TCBEvaluationDataNumber, r.QEStatus, module.ID, moduleSVN, module.Status,
		r.KeyVersion}
}

// scanAudit reads a row of auditColumns with scan.
func scanAudit(scan func(...any) error) (AuditRecord, error) {
	var r AuditRecord
	var t int64
	var rtmrs, keys, advisories, decision, gpus string
	var prodID, svn, moduleSVN *int32
	var prev, hash []byte
	var tcbDate *int64
	var module TDXModule
	if err := scan(&r.ID, &t, &r.Peer, &r.TEE, &r.Platform, &r.MREnclave, &r.MRSigner, &prodID, &svn,
		&r.MRTD, &rtmrs, &r.Measurement, &r.TCBStatus, &r.Debug, &r.Workload, &keys, &decision, &r.Reason, &prev, &hash, &gpus, &r.Manifest,
		&advisories, &tcbDate, &r.TCBEvaluationDataNumber, &r.QEStatus, &module.ID, &moduleSVN, &module.Status,
		&r.KeyVersion); err != nil {
		return AuditRecord{}, fmt.Errorf("read audit records: %w", err)
	}
	r.Time, r.Decision = fromNanos(t), Decision(decision)
	if prodID != nil {
		r.ISVProdID = new(uint16(*prodID))
	}
	if svn != nil {
		r.ISVSVN = new(uint16(*svn))
	}
	if tcbDate != nil {
		r.TCBDate = new(fromNanos(*tcbDate))
	}
	if moduleSVN != nil {
		if *moduleSVN < 0 || *moduleSVN > 0xff {
			return AuditRecord{}, fmt.Errorf("read audit record %d: TDX module SVN %d is not a byte", r.ID, *moduleSVN)
		}
		module.ISVSVN = uint8(*moduleSVN)
		r.TDXModule = &module
	}
	decodeHashes(&r, prev, hash)
	if err := errors.Join(json.Unmarshal([]byte(rtmrs), &r.RTMRs), json.Unmarshal([]byte(keys), &r.Keys),
		json.Unmarshal([]byte(gpus), &r.GPUs), json.Unmarshal([]byte(advisories), &r.AdvisoryIDs)); err != nil {
		return AuditRecord{}, fmt.Errorf("read audit record %d: %w", r.ID, err)
	}
	return r, nil
}

// checkpointArgs returns the values of c's checkpointColumns.
func checkpointArgs(c *Checkpoint) ([]any, error) {
	hash, err := hex.DecodeString(c.RecordHash)
	if err != nil || len(hash) != hashSize {
		return nil, fmt.Errorf("checkpoint: record hash %q is not %d bytes of hex", c.RecordHash, hashSize)
	}
	keys, _ := json.Marshal(c.Keys) // plain fields always marshal
	return []any{c.Time.UnixNano(), c.RecordID, hash, c.Signer, c.Signature, string(keys)}, nil
}

// scanCheckpoint reads a row of id and checkpointColumns with scan.
func scanCheckpoint(scan func(...any) error) (Checkpoint, error) {
	var c Checkpoint
	var t int64
	var hash []byte
	var keys string
	if err := scan(&c.ID, &t, &c.RecordID, &hash, &c.Signer, &c.Signature, &keys); err != nil {
		return Checkpoint{}, fmt.Errorf("read checkpoints: %w", err)
	}
	c.Time, c.RecordHash = fromNanos(t), hex.EncodeToString(hash)
	if err := json.Unmarshal([]byte(keys), &c.Keys); err != nil {
		return Checkpoint{}, fmt.Errorf("read checkpoint %d: keys: %w", c.ID, err)
	}
	return c, nil
}
