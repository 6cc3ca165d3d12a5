package rtmr

import (
	"bytes"
	"testing"
)

// FuzzParse: Parse never panics, and what it accepts is a log in its one written form: writing
// the events again gives the same bytes, so that two logs that parse alike replay alike.
func FuzzParse(f *testing.F) {
	f.Add(Marshal([]Event{ManifestEvent([32]byte{1}), NewEvent("aael", "github.com/confidential-containers PullImage {}")}))
	f.Add([]byte{})
	f.Add([]byte("00 aael x\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		events, err := Parse(b)
		if err != nil {
			return
		}
		if again := Marshal(events); !bytes.Equal(again, b) {
			t.Fatalf("%q parses to %d events, written %q", b, len(events), again)
		}
		for _, e := range events {
			if err := Validate(e); err != nil {
				t.Fatalf("parsed event %s: %v", e, err)
			}
		}
	})
}
