package store

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
)

// The checkpoint file anchors the audit chain outside the database: the server appends each
// checkpoint it signs to it, one JSON object a line, synced. Whoever can write the database can
// delete checkpoints, and with them the proof of the records after the oldest one left; the file,
// kept where the database's administrators cannot write (or shipped to the owner), still names
// them, and VerifyAudit given its checkpoints requires each in the database and covered by the
// chain.

// AppendCheckpoint appends c to the checkpoint file at path, creating it, and syncs it.
func AppendCheckpoint(path string, c Checkpoint) error {
	line, err := json.Marshal(c)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(append(line, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("append the checkpoint to %s: %w", path, err)
	}
	return nil
}

// ReadCheckpointFile reads the checkpoint file at path (ReadCheckpoints). One that does not exist
// holds no checkpoint (the server has signed none yet) unless mustExist.
func ReadCheckpointFile(path string, mustExist bool) ([]Checkpoint, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) && !mustExist {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cs, err := ReadCheckpoints(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cs, nil
}

// ReadCheckpoints reads a checkpoint file, oldest first. A last line without its newline, which a
// server stopped while appending leaves, is left out.
func ReadCheckpoints(r io.Reader) ([]Checkpoint, error) {
	var cs []Checkpoint
	br := bufio.NewReader(r)
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			return cs, nil
		}
		if err != nil {
			return nil, err
		}
		var c Checkpoint
		d := json.NewDecoder(bytes.NewReader(line))
		d.DisallowUnknownFields()
		if err := d.Decode(&c); err != nil {
			return nil, fmt.Errorf("line %d: not a checkpoint: %w", n, err)
		}
		if c.RecordID <= 0 || len(c.Signature) == 0 {
			return nil, fmt.Errorf("line %d: not a checkpoint: no record_id or signature", n)
		}
		cs = append(cs, c)
	}
}
