package provision

import (
	"fmt"
	"sync"

	"github.com/ppml/ppml/store"
)

// keyMarks is the server's high-water mark of each key: the latest state it knows the key
// reached, from the checkpoint file when it started, the checkpoints it signed and the versions
// it released. Someone who can write the database but has no master key cannot make a key
// version, only bring an older one back (the current version set back, newer versions or a key
// deleted, a deleted key's rows restored); the server refuses to release a version before the
// mark.
type keyMarks struct {
	mu sync.Mutex
	m  store.KeyStates
}

// raise raises the marks to the later states of keys.
func (k *keyMarks) raise(keys store.KeyStates) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.m == nil {
		k.m = store.KeyStates{}
	}
	k.m.Raise(keys)
}

// snapshot returns a copy of the marks.
func (k *keyMarks) snapshot() store.KeyStates {
	k.mu.Lock()
	defer k.mu.Unlock()
	m := make(store.KeyStates, len(k.m))
	m.Raise(k.m)
	return m
}

// release reports why version of key name may not be released, or, if it may, raises name's
// mark to it and returns "".
func (k *keyMarks) release(name string, version int) string {
	k.mu.Lock()
	defer k.mu.Unlock()
	v := store.KeyState{Version: version}
	if mark, ok := k.m[name]; ok && v.Before(mark) {
		return fmt.Sprintf("key %q: the store holds version %d, but this server knows the key reached %s "+
			"(ppml key changes and checkpoints say so): someone who can write the database rolled it back. "+
			"Put the newer versions back from a backup of the store, or make a new version with ppml key rotate; "+
			"ppml audit verify names the rollback", name, version, mark)
	}
	if k.m == nil {
		k.m = store.KeyStates{}
	}
	k.m.Raise(store.KeyStates{name: v})
	return ""
}

// seen returns the mark of key name, if any.
func (k *keyMarks) seen(name string) (store.KeyState, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	mark, ok := k.m[name]
	return mark, ok
}

// load raises the marks to the key states that the checkpoints of the checkpoint file at
// path sign, if path is set.
func (k *keyMarks) load(path string) error {
	if path == "" {
		return nil
	}
	cs, err := store.ReadCheckpointFile(path, false)
	if err != nil {
		return fmt.Errorf("audit_checkpoint_file: %w", err)
	}
	for _, c := range cs {
		k.raise(c.Keys)
	}
	return nil
}
