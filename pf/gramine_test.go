package pf

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// The vectors in testdata/gramine/pf were written by Gramine v1.9's gramine-sgx-pf-crypt; see
// the README there.
const vectors = "../testdata/gramine/pf"

func readKey(t testing.TB, name string) Key {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(vectors, name))
	if err != nil {
		t.Fatal(err)
	}
	var k Key
	copy(k[:], b)
	return k
}

func decryptFile(t testing.TB, name string, kdk Key, opts *Options) ([]byte, error) {
	t.Helper()
	f, err := os.Open(filepath.Join(vectors, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	_, err = Decrypt(&out, f, st.Size(), kdk, opts)
	return out.Bytes(), err
}

// gramineVector is one of Gramine's files: its plaintext, and the path it is bound to.
type gramineVector struct{ file, plain, path string }

// gramineGood are the vectors that gramine-sgx-pf-crypt made of each plaintext size.
var gramineGood = []gramineVector{
	{"ct/ct_0.pf", "pt/pt_0.bin", "ct_0.pf"},
	{"ct/ct_1.pf", "pt/pt_1.bin", "ct_1.pf"},
	{"ct/ct_3072.pf", "pt/pt_3072.bin", "ct_3072.pf"},
	{"ct/ct_4096.pf", "pt/pt_4096.bin", "ct_4096.pf"},
	{"ct/ct_4097.pf", "pt/pt_4097.bin", "ct_4097.pf"},
	{"ct/ct_1048576.pf", "pt/pt_1048576.bin", "ct_1048576.pf"},
	{"ct/sub/sub_4097.pf", "pt/pt_4097.bin", "sub/sub_4097.pf"},
}

func TestGramineVectors(t *testing.T) {
	key := readKey(t, "wrap.key")
	for _, tc := range append(slices.Clone(gramineGood), []gramineVector{
		{"ct/stale_tail_1.pf", "pt/pt_1.bin", "stale_tail_1.pf"},
		{"neg/otherkey_4097.pf", "pt/pt_4097.bin", "otherkey_4097.pf"},
		{"neg/flip_meta_minor_1048576.pf", "pt/pt_1048576.bin", "ct_1048576.pf"},
		{"neg/flip_meta_flags_1048576.pf", "pt/pt_1048576.bin", "ct_1048576.pf"},
		{"neg/flip_meta_padding_1048576.pf", "pt/pt_1048576.bin", "ct_1048576.pf"},
	}...) {
		t.Run(tc.file, func(t *testing.T) {
			want, err := os.ReadFile(filepath.Join(vectors, tc.plain))
			if err != nil {
				t.Fatal(err)
			}
			k := key
			if filepath.Base(tc.file) == "otherkey_4097.pf" {
				k = readKey(t, "other.key")
			}
			got, err := decryptFile(t, tc.file, k, &Options{CheckPath: true, Path: tc.path})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("plaintext differs (%d bytes, want %d)", len(got), len(want))
			}
			// The random-access reader agrees.
			f, size := openVector(t, tc.file, k)
			all := make([]byte, size+10)
			n, _ := f.ReadAt(all, 0)
			if !bytes.Equal(all[:n], want) {
				t.Fatalf("ReadAt gives %d bytes that differ", n)
			}
		})
	}
}

func openVector(t testing.TB, name string, kdk Key) (*File, int64) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(vectors, name))
	if err != nil {
		t.Fatal(err)
	}
	f, err := Open(bytes.NewReader(b), int64(len(b)), kdk, nil)
	if err != nil {
		t.Fatal(err)
	}
	return f, f.Size()
}

func TestGramineNegativeVectors(t *testing.T) {
	key := readKey(t, "wrap.key")
	for _, tc := range []struct {
		file string
		want error
		node string // the node named in the error, if any
	}{
		{"neg/otherkey_4097.pf", ErrKey, ""},
		{"neg/otherkey_1048576.pf", ErrKey, ""},
		{"neg/trunc_drop_last_node_1048576.pf", ErrTruncated, ""},
		{"neg/trunc_half_1048576.pf", ErrTruncated, ""},
		{"neg/trunc_meta_only_1048576.pf", ErrTruncated, ""},
		{"neg/trunc_unaligned_1048576.pf", ErrNotProtected, ""},
		{"neg/trunc_unaligned_1.pf", ErrNotProtected, ""},
		{"neg/empty.pf", ErrNotProtected, ""},
		{"neg/flip_data_node2_1048576.pf", ErrDamaged, "data node 0 "},
		{"neg/flip_data_last_1048576.pf", ErrDamaged, "data node 255 "},
		{"neg/flip_data_node2_4097.pf", ErrDamaged, "data node 0 "},
		{"neg/flip_root_mht_1048576.pf", ErrDamaged, "MHT node 0 "},
		{"neg/flip_child_mht_1048576.pf", ErrDamaged, "MHT node 1 "},
		{"neg/flip_meta_enc_1048576.pf", ErrKey, ""},
		{"neg/flip_meta_enc_1.pf", ErrKey, ""},
		{"neg/flip_meta_mac_1048576.pf", ErrKey, ""},
		{"neg/flip_meta_nonce_1048576.pf", ErrKey, ""},
		{"neg/flip_meta_fileid_1048576.pf", ErrNotProtected, ""},
		{"neg/flip_meta_version_1048576.pf", ErrVersion, ""},
	} {
		t.Run(tc.file, func(t *testing.T) {
			got, err := decryptFile(t, tc.file, key, nil)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if !bytes.Contains([]byte(err.Error()), []byte(tc.node)) {
				t.Errorf("error %q does not name %q", err, tc.node)
			}
			if tc.node != "" {
				var ne *NodeError
				if !errors.As(err, &ne) {
					t.Errorf("error %v is not a *NodeError", err)
				}
			}
			// Whatever came out before the failure was checked plaintext.
			want, _ := os.ReadFile(filepath.Join(vectors, "pt/pt_1048576.bin"))
			if !bytes.HasPrefix(want, got) && !bytes.HasPrefix(want[:4097], got) {
				t.Errorf("wrote %d bytes that are not a prefix of the plaintext", len(got))
			}
		})
	}
}

func TestPathCheck(t *testing.T) {
	key := readKey(t, "wrap.key")
	if _, err := decryptFile(t, "ct/ct_4097.pf", key, &Options{CheckPath: true, Path: NormalizePath("./ct_4097.pf")}); err != nil {
		t.Errorf("matching path: %v", err)
	}
	_, err := decryptFile(t, "ct/ct_4097.pf", key, &Options{CheckPath: true, Path: "ct/ct_4097.pf"})
	if !errors.Is(err, ErrPath) {
		t.Errorf("other path: err = %v, want ErrPath", err)
	}
}

func TestNormalizePath(t *testing.T) {
	for in, want := range map[string]string{
		"./a/b": "a/b", "a//b": "a/b", "a/./b/": "a/b", "a/b/../c": "a/c", "/abs/../y": "/y",
		"../x": "../x", ".": "", "": "", "/": "/", "/..": "/", "a/..": "", "a/../../x": "../x",
	} {
		if got := NormalizePath(in); got != want {
			t.Errorf("NormalizePath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestBoundPath(t *testing.T) {
	for _, c := range []struct{ prefix, rel, want string }{
		{"", "a/b", "a/b"},
		{"", "", ""},
		{"", "/a", "/a"},
		{".", "a", "a"},
		{"enc", "", "enc"},
		{"enc", "a/b", "enc/a/b"},
		{"enc/", "a", "enc/a"},
		{"enc//", "a/", "enc/a"},
		{"./enc", "./a", "enc/a"},
		{"enc", "/a", "enc/a"},
		{"enc", "../a", "a"},
		{"enc", "../../a", "../a"},
		{"../enc", "a", "../enc/a"},
		{"enc/sub/..", "a", "enc/a"},
		{"/", "a", "/a"},
		{"/data/enc", "a/b", "/data/enc/a/b"},
		{"/data/enc/", "../x", "/data/x"},
		{"/data", "../../x", "/x"},
	} {
		if got := BoundPath(c.prefix, c.rel); got != c.want {
			t.Errorf("BoundPath(%q, %q) = %q, want %q", c.prefix, c.rel, got, c.want)
		}
	}
}

func TestInspectVectors(t *testing.T) {
	for name, size := range map[string]int64{
		"ct/ct_0.pf": 0, "ct/ct_3072.pf": 3072, "ct/ct_4097.pf": 4097, "ct/ct_1048576.pf": 1048576,
	} {
		b, err := os.ReadFile(filepath.Join(vectors, name))
		if err != nil {
			t.Fatal(err)
		}
		info, err := Inspect(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			t.Fatal(err)
		}
		if info.Major != 2 || info.MinSize > size || info.MaxSize < size {
			t.Errorf("%s: %+v does not cover size %d", name, info, size)
		}
	}
	if _, err := Inspect(bytes.NewReader(nil), 0); !errors.Is(err, ErrNotProtected) {
		t.Errorf("empty file: %v", err)
	}
}
