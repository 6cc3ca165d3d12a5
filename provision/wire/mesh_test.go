package wire

import (
	"bytes"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func TestJoin(t *testing.T) {
	for _, e := range []string{"192.0.2.7:51820", "[2001:db8::1]:1", "0.0.0.0:9"} {
		req := &Request{Join: &Join{Job: "digits", PublicKey: [32]byte{1, 2, 31: 3}, Endpoint: netip.MustParseAddrPort(e)}}
		b, err := req.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		got, err := ReadRequest(bytes.NewReader(b))
		if err != nil || !reflect.DeepEqual(got, req) {
			t.Fatalf("ReadRequest: %+v, %v; want %+v", got.Join, err, req.Join)
		}
	}
	m := &Mesh{Rank: 1, Bits: 24, Nodes: []Member{
		{Address: netip.MustParseAddr("10.7.0.1"), PublicKey: [32]byte{9}, Endpoint: netip.MustParseAddrPort("192.0.2.1:4000")},
		{Address: netip.MustParseAddr("10.7.0.2"), PublicKey: [32]byte{8}, Endpoint: netip.MustParseAddrPort("[2001:db8::2]:4001")},
	}}
	got, err := ReadJoinResponse(bytes.NewReader(GrantJoin(m)))
	if err != nil || !reflect.DeepEqual(got, m) {
		t.Fatalf("ReadJoinResponse: %+v, %v; want %+v", got, err, m)
	}
	_, err = ReadJoinResponse(bytes.NewReader(Refusal(&Request{Join: &Join{}}, "only 1 of 2 nodes joined")))
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "only 1 of 2 nodes joined") {
		t.Fatalf("refused: %v", err)
	}
	// A keys response is not a join response, nor the reverse.
	if _, err := ReadJoinResponse(bytes.NewReader(Refusal(&Request{Keys: []string{"a"}}, "no"))); err == nil || errors.Is(err, ErrRefused) {
		t.Errorf("a keys response read as a join response: %v", err)
	}
}

func TestBadJoins(t *testing.T) {
	for name, b := range map[string]string{
		"no job":    joinRequest,
		"empty job": joinRequest + "\x00",
		"cut key":   joinRequest + "\x01j" + strings.Repeat("k", 31),
		"cut port":  joinRequest + "\x01j" + strings.Repeat("k", 32+17),
	} {
		if _, err := ReadRequest(strings.NewReader(b)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := (&Request{Join: &Join{Job: strings.Repeat("j", 65)}}).Marshal(); err == nil {
		t.Error("a 65-byte job name was accepted")
	}
	grant := func(rank, bits, count int) string {
		m := &Mesh{Rank: rank, Bits: bits}
		for range count {
			m.Nodes = append(m.Nodes, Member{Address: netip.MustParseAddr("10.0.0.1")})
		}
		return string(GrantJoin(m))
	}
	for name, b := range map[string]string{
		"no nodes":    grant(0, 24, 0),
		"rank":        grant(2, 24, 2),
		"bits":        grant(0, 33, 1),
		"cut":         grant(0, 24, 2)[:len(grant(0, 24, 2))-1],
		"status":      joinResponse + "\x07",
		"other magic": keysResponse + "\x00",
	} {
		if _, err := ReadJoinResponse(strings.NewReader(b)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func FuzzReadJoinResponse(f *testing.F) {
	f.Add(GrantJoin(&Mesh{Rank: 0, Bits: 24, Nodes: []Member{{Address: netip.MustParseAddr("10.0.0.1"), Endpoint: netip.MustParseAddrPort("192.0.2.1:1")}}}))
	f.Add(Refusal(&Request{Join: &Join{}}, "why"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ReadJoinResponse(bytes.NewReader(b))
		if err != nil {
			return
		}
		if m.Rank >= len(m.Nodes) || m.Bits > 32 {
			t.Fatalf("accepted %+v", m)
		}
		if again := GrantJoin(m); !bytes.HasPrefix(b, again) {
			t.Fatalf("%+v does not marshal back to the input", m)
		}
	})
}
