package manifest

import (
	"crypto/sha256"
	"math"
	"strings"
	"testing"
)

// Two spellings of the same manifest.
const (
	spelledOut = `# comment
libos.entrypoint = "/bin/app"   # trailing comment
loader.env.B = "2"
loader.env.A.value = "1"
loader.argv = [ "app",
  'x\y' ]
sgx.isvsvn = 0x10
sgx.isvprodid = 1_000
sgx.trusted_files = [ { sha256 = "0000000000000000000000000000000000000000000000000000000000000000", uri = "file:a" } ]
fs.mounts = [ { path = "/a", uri = "file:a" }, { type = "tmpfs", path = "/tmp" } ]
`
	tabled = `[sgx]
isvprodid = 1000
trusted_files = [{uri="file:a",sha256="0000000000000000000000000000000000000000000000000000000000000000"}]
isvsvn = 16

[[fs.mounts]]
uri = "file:a"
path = "/a"

[[fs.mounts]]
path = "/tmp"
type = "tmpfs"

[loader]
argv = ["app", "x\\y"]
env = { A = { value = "1" }, "B" = "2" }

[libos]
entrypoint = "/bin/app"
`
)

func TestCanonicalIgnoresSpelling(t *testing.T) {
	a, b := mustParse(t, spelledOut), mustParse(t, tabled)
	if string(a.Canonical()) != string(b.Canonical()) || Measure(a) != Measure(b) {
		t.Errorf("canonical forms differ:\n%s\n%s", a.Canonical(), b.Canonical())
	}
	want := `# ppml manifest, canonical form 1
fs.mounts = [
  { path = "/a", uri = "file:a" },
  { path = "/tmp", type = "tmpfs" },
]
libos.entrypoint = "/bin/app"
loader.argv = [
  "app",
  "x\\y",
]
loader.env.A.value = "1"
loader.env.B = "2"
sgx.isvprodid = 1000
sgx.isvsvn = 16
sgx.trusted_files = [
  { sha256 = "0000000000000000000000000000000000000000000000000000000000000000", uri = "file:a" },
]
`
	if got := string(a.Canonical()); got != want {
		t.Errorf("canonical form:\n%s\nwant:\n%s", got, want)
	}
	if Measure(a) != sha256.Sum256([]byte(want)) {
		t.Error("the measurement is not the SHA-256 of the canonical form")
	}
}

func TestCanonicalRoundTrip(t *testing.T) {
	for _, src := range []string{spelledOut, tabled, minimal} {
		m := mustParse(t, src)
		again := mustParse(t, string(m.Canonical()))
		if string(again.Canonical()) != string(m.Canonical()) {
			t.Errorf("canonical form of the canonical form differs:\n%s\n%s", m.Canonical(), again.Canonical())
		}
	}
}

func TestMeasureChangesWithAnyValue(t *testing.T) {
	base := Measure(mustParse(t, spelledOut))
	for _, change := range [][2]string{
		{`"/bin/app"`, `"/bin/App"`},
		{`loader.env.B = "2"`, `loader.env.B = "3"`},
		{`0x10`, `0x11`},
		{`uri = "file:a" }`, `uri = "file:b" }`},
		{`"0000000000000000000000000000000000000000000000000000000000000000"`, `"0000000000000000000000000000000000000000000000000000000000000001"`},
		{`# comment`, `sgx.enclave_size = "4G"`},
		{`# comment`, `sgx.debug = false`},
		{`# comment`, `loader.uid = 65534`}, // the default, written: the measurement covers what is written
		{`{ type = "tmpfs", path = "/tmp" }`, `{ type = "tmpfs", path = "/tmp" }, { type = "tmpfs", path = "/tmp2" }`},
	} {
		if !strings.Contains(spelledOut, change[0]) {
			t.Fatalf("%q is not in the manifest", change[0])
		}
		if Measure(mustParse(t, strings.Replace(spelledOut, change[0], change[1], 1))) == base {
			t.Errorf("changing %s to %s leaves the measurement as it was", change[0], change[1])
		}
	}
}

func TestEncodeValues(t *testing.T) {
	tree := map[string]any{
		"s": map[string]any{
			"str":   "q\"b\\ \b\t\n\f\r \x01 \x7f é",
			"int":   int64(-12),
			"f":     []any{1.5, 100.0, 1e21, 1e-7, math.Inf(1), math.Inf(-1), math.NaN(), math.Copysign(0, -1)},
			"t":     []map[string]any{{"a b": true, "n": map[string]any{}}, {"x": []any{[]any{}, map[string]any{"k": false}}}},
			"empty": []any{},
			"":      "empty key",
			"nest":  map[string]any{},
		},
	}
	b, err := encode(tree)
	if err != nil {
		t.Fatal(err)
	}
	want := `# ppml manifest, canonical form 1
s."" = "empty key"
s.empty = []
s.f = [
  1.5,
  100.0,
  1e+21,
  1e-07,
  inf,
  -inf,
  nan,
  -0.0,
]
s.int = -12
s.str = "q\"b\\ \b\t\n\f\r \u0001 \u007F é"
s.t = [
  { "a b" = true, n = {} },
  { x = [[], { k = false }] },
]
`
	if string(b) != want {
		t.Errorf("encode:\n%s\nwant:\n%s", b, want)
	}
}
