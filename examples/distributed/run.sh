#!/bin/bash
# Confidential distributed training on the simulated platform: two nodes, each under ppml run in
# a network namespace of its own on this machine (as on two machines: a bridge joins their veth
# pairs, and the data owner's provisioning server listens on it), train one network together
# with PyTorch's DistributedDataParallel over gloo. Each node decrypts only its own shard of the
# owner's training set; the nodes' gradients cross the network only inside the job's WireGuard
# mesh, whose peers and keys the server gives each node after attesting it; rank 0 writes the
# model encrypted. The model is then evaluated under ppml run, and its accuracy compared with a
# single-node run's. Then a node whose script changed is refused and the other stops, and a
# node that dies mid-training ends the job on the other.
#
#   examples/distributed/run.sh [DIR]
#
# DIR (demo/distributed by default) is made afresh: it must be new, empty, or made by this script.
#   PPML_DEMO_PORT  the provisioning server's port (44336)
#   PPML_BIN        the folder of the ppml binary (bin/, which make build makes)
#   PPML_NET        the prefix of the namespaces, bridge and veths this script makes (ppmld)
#   PPML_SUBNET     the first three bytes of the bridge's IPv4 /24 (10.231.0): the server is at
#                   .254, the nodes at .1 and .2; runs at once on one machine need different ones
#   PPML_BENCH=1    also measure: all-reduce bandwidth over the mesh against a plain veth, and
#                   the DDP epoch time under ppml against without (docs/benchmarks.md);
#                   PPML_BENCH=only measures and skips the rest; PPML_BENCH_RUNS runs (3),
#                   each native then under ppml, and the median of their ratios
#   PPML_MTU        the MTU of the bridge and the veths (1500): 9000 plays jumbo frames, and
#                   the mesh's MTU follows it (the path's less WireGuard's 80 bytes)
#   PPML_CANARY     a string that rank 0 sends the others over the mesh before training (the
#                   test captures the packets on the veths and looks for it)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
PATH="${PPML_BIN:-$repo/bin}:$PATH"
dir=${1:-$repo/demo/distributed}
port=${PPML_DEMO_PORT:-44336}
net=${PPML_NET:-ppmld}
mtu=${PPML_MTU:-1500}
python=/usr/bin/python3
subnet=${PPML_SUBNET:-10.231.0} # the bridge's: the server at .254, the nodes at .1 and .2

step() { printf '\n\033[1m== %s ==\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }
fail() { echo "distributed: $*" >&2; exit 1; }

if [ -d "$dir" ] && [ ! -e "$dir/.ppml-distributed" ] && [ -n "$(ls -A "$dir")" ]; then
	fail "$dir is not empty and was not made by this script: choose another folder"
fi
rm -rf "$dir"
mkdir -p "$dir"
touch "$dir/.ppml-distributed"
cd "$dir"

server_pid=""
cleanup() {
	[ -z "$server_pid" ] || kill "$server_pid" 2>/dev/null || true
	for i in 0 1; do ip netns del "$net-n$i" 2>/dev/null || true; done
	ip link del "$net-br" 2>/dev/null || true
	true
}
trap cleanup EXIT

step "The untrusted machines: two network namespaces on a bridge, the server's address on it"
cleanup
show ip link add "$net-br" mtu "$mtu" type bridge
ip addr add "$subnet.254/24" dev "$net-br"
ip link set "$net-br" up
for i in 0 1; do
	ip netns add "$net-n$i"
	ip link add "$net-h$i" mtu "$mtu" type veth peer name "$net-v$i" mtu "$mtu"
	ip link set "$net-v$i" netns "$net-n$i"
	ip link set "$net-h$i" master "$net-br" up
	ip -n "$net-n$i" addr add "$subnet.$((i + 1))/24" dev "$net-v$i"
	ip -n "$net-n$i" link set "$net-v$i" up
	ip -n "$net-n$i" link set lo up
done
ip -n "$net-n0" -br addr

step "The data owner's files: scikit-learn's digits; the training set in two shards, one per node"
show "$python" "$here/../training/prepare-data.py" plaintext/data
"$python" - <<'PY'
import numpy as np
with np.load("plaintext/data/train.npz") as f:
    images, labels = f["images"], f["labels"]
half = len(labels) // 2  # shards of one size: every node takes as many steps
for i in range(2):
    np.savez("plaintext/shard%d.npz" % i, images=images[i * half:(i + 1) * half], labels=labels[i * half:(i + 1) * half])
    print("shard %d: %d training images" % (i, half))
PY
show ppml pf gen-key -w wrap_key

step "Secret provisioning (owner): one manifest for every node, one measurement"
show ppml sim init sim
show ppml serve setup secret_prov --host "$subnet.254"
for node in node0 node1 eval; do
	mkdir -p $node/app $node/ssl $node/enc/data $node/enc/output
	cp secret_prov/ca.crt $node/ssl/
	cp "$here/../training/net.py" $node/app/
done
for i in 0 1; do
	cp "$here/train-ddp.py" "$here/allreduce.py" node$i/app/
	# Bound to the path the manifest gives, relative to the node's folder.
	(cd node$i && show ppml pf encrypt -w ../wrap_key -i ../plaintext/shard$i.npz -o enc/data/train.npz)
	(cd node$i && for script in train-ddp allreduce; do
		ppml manifest render "$here/distributed.manifest.template" -D script=$script.py -D server=$subnet.254:$port -o $script.manifest
	done)
done
cp "$here/../training/evaluate.py" eval/app/
(cd eval && show ppml pf encrypt -w ../wrap_key -i ../plaintext/data/test.npz -o enc/data/test.npz)
(cd eval && ppml manifest render "$here/../training/training.manifest.template" -D script=evaluate.py -D server=$subnet.254:$port -o evaluate.manifest)
train=$(ppml manifest measure node0/train-ddp.manifest)
[ "$train" = "$(ppml manifest measure node1/train-ddp.manifest)" ] || fail "the nodes' manifests differ"
allreduce=$(ppml manifest measure node0/allreduce.manifest)
evaluate=$(ppml manifest measure eval/evaluate.manifest)
echo "train-ddp.py's measurement: $train"

step "The owner's server: the job \"digits\" has two nodes, each train-ddp.py's measurement"
cat > secret_prov/server.toml <<TOML
listen = "$subnet.254:$port"
tls_cert = "server.crt"
tls_key = "server.key"
store = "sqlite:ppml.db"
master_key_file = "master.key"
sim_platforms = ["../sim"]

[[workload]]
name = "ddp"
tee = "sgx"
mrenclave = ["$train", "$allreduce", "$evaluate"] # evaluate.py, with ppml.network "none", joins no job
allow_simulated = true
keys = ["default"]

[[job]]
name = "digits"
workloads = ["ddp"]
nodes = 2
subnet = "10.77.0.0/24"
join_timeout = "20s"
TOML
cat secret_prov/server.toml | sed -n '/\[\[job\]\]/,$p'
show ppml key import default -w wrap_key --config secret_prov/server.toml
ppml serve --config secret_prov/server.toml 2> secret_prov/server.log &
server_pid=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/$subnet.254/$port") 2>/dev/null && break; sleep 0.1; done
kill -0 "$server_pid" 2>/dev/null || { cat secret_prov/server.log >&2; fail "the server did not start"; }

# node I MANIFEST [ENV...]: runs ppml run MANIFEST on node I, in its namespace and folder, in the
# background, its output in nodeI/MANIFEST.log; its PID in node_pid.
node() {
	local i=$1 manifest=$2
	shift 2
	(cd node$i && exec env "$@" ip netns exec "$net-n$i" ppml run $manifest --tee sim --sim-platform ../sim -v > $manifest.log 2>&1) &
	node_pid=$!
}
# both MANIFEST [ENV...]: runs MANIFEST on both nodes and waits for them; fails, showing their
# output, if one does.
both() {
	local manifest=$1 status=0
	shift
	node 0 $manifest "$@"; local p0=$node_pid
	sleep 0.5 # node 0 joins first: rank 0
	node 1 $manifest "$@"; local p1=$node_pid
	wait $p0 || status=1
	wait $p1 || status=1
	for i in 0 1; do sed "s/^/node $i: /" node$i/$manifest.log | grep -v "allow_all_but_log" || true; done
	[ $status = 0 ] || fail "$manifest failed"
}

if [ "${PPML_BENCH:-}" != only ]; then
	step "Confidential distributed training: both nodes under ppml run, the model written encrypted"
	both train-ddp.manifest CANARY=${PPML_CANARY:-}
	show ppml pf inspect node0/enc/output/model.pt

	step "Confidential evaluation of the model on the encrypted test set"
	cp node0/enc/output/model.pt eval/enc/output/model.pt
	(cd eval && show ppml run evaluate.manifest --tee sim --sim-platform ../sim)
	(cd eval && show ppml pf decrypt -V -w ../wrap_key -i enc/output/evaluation.txt -o ../plaintext/evaluation.txt)
	show cat plaintext/evaluation.txt

	step "Yardstick: the same training on one node, natively, on the whole training set"
	mkdir -p single
	(cd node0/app && DATA_DIR=../../plaintext/data OUTPUT_DIR=../../single MASTER_ADDR=127.0.0.1 MASTER_PORT=$((port + 1)) WORLD_SIZE=1 RANK=0 OMP_NUM_THREADS=1 "$python" train-ddp.py | tail -1)
	single=$(cd node0/app && "$python" -c '
import numpy as np, torch
from net import make_net
with np.load("../../plaintext/data/test.npz") as f:
    images, labels = torch.from_numpy(f["images"]), torch.from_numpy(f["labels"])
net = make_net(); net.load_state_dict(torch.load("../../single/model.pt")); net.eval()
with torch.no_grad():
    print("%.4f" % float((net(images).argmax(dim=1) == labels).float().mean()))')
	accuracy=$(awk '$1 == "accuracy" { print $2 }' plaintext/evaluation.txt)
	echo "accuracy: distributed $accuracy, single node $single"
	awk -v a="$accuracy" -v s="$single" 'BEGIN { d = a - s; if (d < 0) d = -d; exit !(a > 0.93 && d <= 0.03) }' ||
		fail "accuracy $accuracy is not above 0.93 and within 0.03 of the single node's $single"
	echo "within 0.03 of the single node's, and above 93%"

	step "A node whose script changed is refused; the other stops when join_timeout ends"
	echo "# changed" >> node1/app/train-ddp.py
	(cd node1 && ppml manifest render "$here/distributed.manifest.template" -D script=train-ddp.py -D server=$subnet.254:$port -o train-ddp.manifest --force)
	node 0 train-ddp.manifest; p0=$node_pid
	sleep 0.5
	node 1 train-ddp.manifest; p1=$node_pid
	start=$SECONDS
	wait $p1 && fail "the changed node ran"
	wait $p0 && fail "the other node ran alone"
	echo "node 1: $(grep 'ppml:' node1/train-ddp.manifest.log)"
	echo "node 0, after $((SECONDS - start)) s: $(grep 'ppml:' node0/train-ddp.manifest.log)"
	cp "$here/train-ddp.py" node1/app/
	(cd node1 && ppml manifest render "$here/distributed.manifest.template" -D script=train-ddp.py -D server=$subnet.254:$port -o train-ddp.manifest --force)

	step "A node that dies mid-training ends the job on the other"
	node 0 train-ddp.manifest EPOCHS=1000; p0=$node_pid
	sleep 0.5
	node 1 train-ddp.manifest EPOCHS=1000; p1=$node_pid
	for _ in $(seq 600); do grep -q "^epoch 1 " node1/train-ddp.manifest.log 2>/dev/null && break; sleep 0.1; done
	show kill -KILL $p1 # ppml run itself: its sandbox and workload die with it
	start=$SECONDS
	wait $p0 && fail "node 0 went on without node 1"
	echo "node 0 stopped $((SECONDS - start)) s after node 1 died:"
	grep -v allow_all_but_log node0/train-ddp.manifest.log | tail -3
	wait $p1 2>/dev/null || true
fi

if [ -n "${PPML_BENCH:-}" ]; then
	step "Benchmarks: all-reduce bandwidth and DDP epoch time, under ppml against without"
	# native SCRIPT [ENV...]: runs the script on both nodes natively, in the same
	# namespaces, over the plain veths; prints rank 0's output.
	native() {
		local script=$1 p0 p1
		shift
		for i in 0 1; do
			(cd node$i/app && exec env OUTPUT_DIR=../../single MASTER_ADDR=$subnet.1 MASTER_PORT=29500 WORLD_SIZE=2 RANK=$i GLOO_SOCKET_IFNAME=$net-v$i OMP_NUM_THREADS=1 "$@" \
				DATA_DIR=../../plaintext/sh$i ip netns exec "$net-n$i" "$python" $script > ../native-$i.log 2>&1) &
			[ $i = 0 ] && p0=$! || p1=$!
		done
		wait $p0; wait $p1
		cat node0/native-0.log
	}
	mkdir -p single
	for i in 0 1; do mkdir -p plaintext/sh$i && cp plaintext/shard$i.npz plaintext/sh$i/train.npz; done
	mean() { awk '/^epoch [0-9]+ time/ { if ($2 > 0) { s += $4; n++ } } END { printf "%.4f", s / n }' "$1"; }
	ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
	median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
	# Each run measures natively, then under ppml, so that both see the machine's load of the
	# moment; the median of the runs' ratios is the figure.
	: > bench-ratios.txt
	for run in $(seq "${PPML_BENCH_RUNS:-3}"); do
		native allreduce.py > bench-native-allreduce.log
		both allreduce.manifest > bench-allreduce.log # the nodes' output
		plain=$(awk '/^allreduce/ { print $2 }' bench-native-allreduce.log)
		meshbw=$(awk '/^allreduce/ { print $2 }' node0/allreduce.manifest.log)
		native train-ddp.py > bench-native-ddp.log
		both train-ddp.manifest > bench-ddp.log
		nat=$(mean bench-native-ddp.log)
		ppmlt=$(mean node0/train-ddp.manifest.log)
		echo "$(ratio "$meshbw" "$plain") $(ratio "$ppmlt" "$nat")" >> bench-ratios.txt
		echo "run $run: all-reduce of 16 MiB: plain veth $plain MB/s, mesh $meshbw MB/s, ratio $(ratio "$meshbw" "$plain");" \
			"DDP epoch (epochs 1-19): native $nat s, ppml $ppmlt s, ratio $(ratio "$ppmlt" "$nat")"
	done
	echo "the veths' MTU $mtu, the mesh's $(sed -n 's/.*joined the mesh.* mtu=\([0-9]*\).*/\1/p' node0/allreduce.manifest.log)"
	echo "median of $(wc -l < bench-ratios.txt) runs: all-reduce ratio $(cut -d' ' -f1 bench-ratios.txt | median) (target at least 0.5)," \
		"DDP epoch ratio $(cut -d' ' -f2 bench-ratios.txt | median) (target at most 1.3)"
fi

step "The server's audit log: every join and every refusal"
show ppml audit --config secret_prov/server.toml
