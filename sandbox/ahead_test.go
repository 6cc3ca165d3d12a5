package sandbox

import (
	"slices"
	"strings"
	"testing"

	"github.com/ppml/ppml/trustfs"
)

var orderEntries = []trustfs.Entry{
	{Path: "0/a", Kind: trustfs.Trusted, Host: "usr/lib/a"},
	{Path: "0/b", Kind: trustfs.Trusted, Host: "usr/lib/b"},
	{Path: "1", Kind: trustfs.Unchecked, Host: "var/log"},
}

// TestReadOrder: an order file, which the host may have written, yields the trusted files it
// lists, in its order, each once, and nothing else: neither other host paths nor paths without
// their leading "/", and no more lines than there are trusted files are read.
func TestReadOrder(t *testing.T) {
	for _, tc := range []struct {
		file string
		want []string
	}{
		{"/usr/lib/b\n/usr/lib/a\n", []string{"usr/lib/b", "usr/lib/a"}},
		{"/usr/lib/a\n/usr/lib/a\n/usr/lib/b", []string{"usr/lib/a"}}, // 2 lines at most
		{"usr/lib/a\n/var/log\n/etc/passwd\n/usr/lib/b\n", nil},
		{"/" + strings.Repeat("x", maxOrderLine) + "\n/usr/lib/a\n", nil},
		{"", nil},
	} {
		if got := readOrder(strings.NewReader(tc.file), orderEntries); !slices.Equal(got, tc.want) {
			t.Errorf("%.40q: %q, want %q", tc.file, got, tc.want)
		}
	}
}

// FuzzReadOrder: whatever the order file holds, it yields trusted files only, each once.
func FuzzReadOrder(f *testing.F) {
	f.Add("/usr/lib/b\n/usr/lib/a\n")
	f.Fuzz(func(t *testing.T, file string) {
		got := readOrder(strings.NewReader(file), orderEntries)
		for i, host := range got {
			if host != "usr/lib/a" && host != "usr/lib/b" || slices.Contains(got[:i], host) {
				t.Fatalf("%q yielded %q", file, got)
			}
		}
	})
}
