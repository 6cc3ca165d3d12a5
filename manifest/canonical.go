package manifest

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
)

// canonicalHeader is the first line of every canonical manifest.
const canonicalHeader = "# ppml manifest, canonical form 1\n"

// Measure returns the workload measurement that the simulated platform reports as MRENCLAVE:
// the SHA-256 of m's canonical form. It covers every trusted file only through the hashes the
// manifest holds, so it is meaningful once they are all there (see CheckHashed).
func Measure(m *Manifest) [32]byte { return sha256.Sum256(m.canonical) }

// encode writes a decoded TOML document in canonical form: see the package documentation.
func encode(tree map[string]any) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(canonicalHeader)
	if err := encodeTable(&b, nil, tree); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// encodeTable writes one line for each value under table t, whose key is prefix.
func encodeTable(b *bytes.Buffer, prefix []string, t map[string]any) error {
	for _, k := range slices.Sorted(maps.Keys(t)) {
		key := append(slices.Clip(prefix), k)
		if sub, ok := t[k].(map[string]any); ok {
			if err := encodeTable(b, key, sub); err != nil {
				return err
			}
			continue
		}
		for i, s := range key {
			if i > 0 {
				b.WriteByte('.')
			}
			writeKey(b, s)
		}
		b.WriteString(" = ")
		if err := encodeValue(b, t[k], true); err != nil {
			return fmt.Errorf("manifest key %s: %w", strings.Join(key, "."), err)
		}
		b.WriteByte('\n')
	}
	return nil
}

// encodeValue writes v; line says whether it is the value of a line rather than inside another.
func encodeValue(b *bytes.Buffer, v any, line bool) error {
	switch v := v.(type) {
	case string:
		writeString(b, v)
	case int64:
		b.WriteString(strconv.FormatInt(v, 10))
	case float64:
		b.WriteString(formatFloat(v))
	case bool:
		b.WriteString(strconv.FormatBool(v))
	case []map[string]any: // an array of tables ([[name]])
		elems := make([]any, len(v))
		for i, t := range v {
			elems[i] = t
		}
		return encodeValue(b, elems, line)
	case []any:
		return encodeArray(b, v, line)
	case map[string]any:
		if len(v) == 0 {
			b.WriteString("{}")
			return nil
		}
		b.WriteString("{ ")
		for i, k := range slices.Sorted(maps.Keys(v)) {
			if i > 0 {
				b.WriteString(", ")
			}
			writeKey(b, k)
			b.WriteString(" = ")
			if err := encodeValue(b, v[k], false); err != nil {
				return err
			}
		}
		b.WriteString(" }")
	default:
		return fmt.Errorf("a %T is not allowed in a manifest (dates and times are not)", v)
	}
	return nil
}

// encodeArray writes a non-empty array that is the value of a line one element per line, and any
// other array on one line.
func encodeArray(b *bytes.Buffer, v []any, line bool) error {
	if len(v) == 0 {
		b.WriteString("[]")
		return nil
	}
	open, sep, end := "[", ", ", "]"
	if line {
		open, sep, end = "[\n  ", ",\n  ", ",\n]"
	}
	b.WriteString(open)
	for i, e := range v {
		if i > 0 {
			b.WriteString(sep)
		}
		if err := encodeValue(b, e, false); err != nil {
			return err
		}
	}
	b.WriteString(end)
	return nil
}

func formatFloat(f float64) string {
	switch {
	case math.IsNaN(f):
		return "nan"
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	}
	s := strconv.FormatFloat(f, 'g', -1, 64)
	if !strings.ContainsAny(s, ".e") {
		s += ".0"
	}
	return s
}

func writeKey(b *bytes.Buffer, k string) {
	bare := k != ""
	for _, r := range k {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '_' || r == '-') {
			bare = false
			break
		}
	}
	if bare {
		b.WriteString(k)
	} else {
		writeString(b, k)
	}
}

// writeString writes a TOML basic string, escaping '"', '\' and the control characters.
func writeString(b *bytes.Buffer, s string) {
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\b':
			b.WriteString(`\b`)
		case '\t':
			b.WriteString(`\t`)
		case '\n':
			b.WriteString(`\n`)
		case '\f':
			b.WriteString(`\f`)
		case '\r':
			b.WriteString(`\r`)
		default:
			if r < 0x20 || r == 0x7f {
				fmt.Fprintf(b, `\u%04X`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
}
