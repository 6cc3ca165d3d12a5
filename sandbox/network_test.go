package sandbox_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ppml/ppml/internal/capture"
	"github.com/ppml/ppml/manifest"
	"github.com/ppml/ppml/sandbox"
)

// dialScript tries to connect to each address of its arguments and says how it went.
const dialScript = `import socket, sys
for a in sys.argv[1:]:
    host, port = a.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
        print(a, "connected")
    except OSError as e:
        print(a, type(e).__name__)
`

// TestNetworkModes checks that a workload reaches the host's network with ppml.network =
// "host" only: by default it has its own loopback and nothing else.
func TestNetworkModes(t *testing.T) {
	w := newWorld(t, map[string]string{"dial.py": dialScript})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	host := ln.Addr().String()
	for _, tc := range []struct{ network, want string }{
		{"", host + " ConnectionRefusedError\n192.0.2.1:80 OSError\n"},
		{`ppml.network = "none"`, host + " ConnectionRefusedError\n192.0.2.1:80 OSError\n"},
		{`ppml.network = "host"`, host + " connected\n"},
	} {
		args := fmt.Sprintf(`loader.argv = ["python3", "/app/dial.py", %q]`, host)
		if tc.network != `ppml.network = "host"` {
			args = fmt.Sprintf(`loader.argv = ["python3", "/app/dial.py", %q, "192.0.2.1:80"]`, host)
		}
		m := w.manifest(args, "", tc.network, "")
		var out bytes.Buffer
		res, err := sandbox.Run(context.Background(), m, sandbox.Options{Stdout: &out, Stderr: &out})
		if err != nil {
			t.Fatal(err)
		}
		if res.ExitCode != 0 || out.String() != tc.want {
			t.Errorf("%q: exit status %d, the workload said\n%s\nwant\n%s", tc.network, res.ExitCode, out.String(), tc.want)
		}
	}
}

// meshScript is a node of a job: rank 0 listens on its mesh address, rank 1 sends it the
// canary of CANARY, many times over, and hears it back; each then tries an address outside
// the mesh, the host's listener of its first argument.
const meshScript = `import os, socket, sys, time
rank, canary = int(os.environ["RANK"]), os.environ["CANARY"].encode() * 4096
def receive(c):
    got = b""
    while len(got) < len(canary):
        d = c.recv(1 << 16)
        if not d:
            break
        got += d
    return got
if rank == 0:
    s = socket.socket()
    s.bind((os.environ["PPML_MESH_ADDR"], 7000))
    s.listen()
    c, _ = s.accept()
    c.sendall(receive(c))
    c.close()
else:
    for _ in range(100):
        try:
            c = socket.create_connection((os.environ["MASTER_ADDR"], 7000), timeout=5)
            break
        except OSError:
            time.sleep(0.1)
    c.sendall(canary)
    print("echo", "ok" if receive(c) == canary else "differs")
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2)
    print("host connected")
except OSError as e:
    print("host", type(e).__name__)
print(" ".join(os.environ[v] for v in ["PPML_MESH_RANK", "PPML_MESH_SIZE", "PPML_MESH_ADDR", "MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "GLOO_SOCKET_IFNAME"]))
`

// meshPolicy admits the workload whose MRENCLAVE is %x as the nodes of a job of two.
const meshPolicy = `[[workload]]
name = "node"
tee = "sgx"
mrenclave = ["%x"]
keys = ["default"]
allow_simulated = true

[[job]]
name = "pair"
workloads = ["node"]
nodes = 2
subnet = "10.77.0.0/24"
join_timeout = "3s"
`

// meshEnv is the manifest's part that makes it a node of job "pair" at the server addr.
func meshEnv(addr string) string {
	return fmt.Sprintf(`loader.env.SECRET_PROVISION_SERVERS = %q
loader.env.SECRET_PROVISION_CA_CHAIN_PATH = "ca.crt"
ppml.network = "mesh"
ppml.job = "pair"`, addr)
}

// runNodes runs the manifests given at once, one node each, and returns their outputs and
// errors.
func runNodes(w *world, ms ...*manifest.Manifest) ([]string, []*sandbox.Result, []error) {
	outs, results, errs := make([]string, len(ms)), make([]*sandbox.Result, len(ms)), make([]error, len(ms))
	var wg sync.WaitGroup
	for i, m := range ms {
		wg.Go(func() {
			var out bytes.Buffer
			results[i], errs[i] = sandbox.Run(context.Background(), m, w.options(m, &out))
			outs[i] = out.String()
		})
		time.Sleep(200 * time.Millisecond) // node i joins i-th: its rank
	}
	wg.Wait()
	return outs, results, errs
}

// TestMesh runs a job of two nodes that exchange a canary over their mesh, and checks that
// what crosses the host's network does not hold it, that neither reaches the host's network,
// and that their environment tells them their place.
func TestMesh(t *testing.T) {
	slow(t)
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skip("needs /dev/net/tun")
	}
	w := newWorld(t, map[string]string{"node.py": meshScript})
	canary := newCanary()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	m := w.manifest(fmt.Sprintf(`loader.argv = ["python3", "/app/node.py", %q]`, port), "",
		meshEnv(w.addr)+fmt.Sprintf("\nloader.env.CANARY = %q", canary), "")
	w.servePolicy(fmt.Sprintf(meshPolicy, manifest.Measure(m)), nil)

	c, err := capture.Start("lo", []byte(canary))
	if err != nil {
		t.Fatal(err)
	}
	outs, results, errs := runNodes(w, m, m)
	seen := c.Stop()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		if results[i].ExitCode != 0 {
			t.Fatalf("node %d: exit status %d:\n%s", i, results[i].ExitCode, outs[i])
		}
	}
	want := []string{
		"host ConnectionRefusedError\n0 2 10.77.0.1 10.77.0.1 29500 2 ppml0\n",
		"echo ok\nhost ConnectionRefusedError\n1 2 10.77.0.2 10.77.0.1 29500 2 ppml0\n",
	}
	for i := range outs {
		if outs[i] != want[i] {
			t.Errorf("node %d said\n%s\nwant\n%s", i, outs[i], want[i])
		}
	}
	if seen.UDP == 0 {
		t.Error("no WireGuard packet crossed the host's loopback")
	}
	if seen.Found {
		t.Error("the canary crossed the host's loopback in plaintext")
	}
	t.Logf("captured %d packets (%d UDP), %d bytes", seen.Packets, seen.UDP, seen.Bytes)
}

// TestMeshRefused checks that a node whose script changed never joins, and that the other
// stops with an error saying so when the job's join_timeout ends.
func TestMeshRefused(t *testing.T) {
	slow(t)
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skip("needs /dev/net/tun")
	}
	w := newWorld(t, map[string]string{"node.py": meshScript})
	env := meshEnv(w.addr) + "\nloader.env.CANARY = \"x\""
	good := w.manifest(`loader.argv = ["python3", "/app/node.py", "1"]`, "", env, "")
	w.servePolicy(fmt.Sprintf(meshPolicy, manifest.Measure(good)), nil)
	w.write("app/node.py", meshScript+"print('changed')\n")
	changed := w.manifest(`loader.argv = ["python3", "/app/node.py", "1"]`, "", env, "")

	start := time.Now()
	_, _, errs := runNodes(w, good, changed)
	took := time.Since(start)
	if errs[1] == nil || !strings.Contains(errs[1].Error(), "the server refused") {
		t.Errorf("the changed node: %v, want a refusal", errs[1])
	}
	if errs[0] == nil || !strings.Contains(errs[0].Error(), `job "pair": only 1 of its 2 nodes joined within join_timeout (3s)`) {
		t.Errorf("the other node: %v, want that the job did not start", errs[0])
	}
	if took > 10*time.Second {
		t.Errorf("the nodes stopped after %v, for a join_timeout of 3s", took)
	}
}
