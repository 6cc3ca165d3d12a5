package capture

import (
	"io"
	"net"
	"os"
	"testing"
)

// TestFound checks that a capture of loopback finds a pattern sent in the clear over TCP, and
// does not find one never sent: what the mesh's tests rely on.
func TestFound(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for an AF_PACKET socket")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			io.Copy(io.Discard, c)
			c.Close()
		}
	}()
	sent, other := []byte("canary-4f1c9a2e-sent"), []byte("canary-4f1c9a2e-never")
	for _, tc := range []struct {
		pattern []byte
		found   bool
	}{{sent, true}, {other, false}} {
		c, err := Start("lo", tc.pattern)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conn.Write(sent)
		conn.Close()
		r := c.Stop()
		if r.Found != tc.found || r.Packets == 0 {
			t.Errorf("pattern %q: %+v, want found %v", tc.pattern, r, tc.found)
		}
	}
}
