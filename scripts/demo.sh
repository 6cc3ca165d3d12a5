#!/bin/bash
# The PyTorch PPML tutorial's flow on the simulated platform, with a plain Python workload: the
# owner encrypts her files and runs a provisioning server that admits exactly her workload's
# measurement; ppml run checks the workload, attests over RA-TLS, receives the key and runs it
# with its encrypted folder decrypted transparently; a changed workload is refused; the owner
# reads the audit log and decrypts the result. Runs again and again: each run starts from an
# empty demo/ folder.
set -euo pipefail
cd "$(dirname "$0")/.."
PATH="$PWD/bin:$PATH"
examples="$PWD/examples"
port=44333

step() { printf '\n\033[1m== %s ==\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

rm -rf demo
mkdir -p demo/plain
cd demo
server_pid=""
trap '[ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; true' EXIT

step "The owner's files: a model and an input"
head -c $((96 << 20)) /dev/urandom > plain/model.bin
echo "confidential input for the workload" > plain/input.txt
ls -l plain

step "Step 1 (owner): generate the wrap key"
show ppml pf gen-key -w wrap_key

step "Step 2 (owner): encrypt the files; each is bound to the path the workload's mount gives it"
show ppml pf encrypt -v -w wrap_key -i plain -o enc

step "Step 3 (untrusted host): all it can tell without the key, and tampering is caught"
show ppml pf inspect enc/input.txt
cp enc/model.bin tampered.bin
printf 'X' | dd of=tampered.bin bs=1 seek=50000000 conv=notrunc status=none
if ppml pf decrypt -w wrap_key -i tampered.bin -o tampered.out; then
	echo "demo: tampering went unnoticed" >&2
	exit 1
fi
test ! -e tampered.out && echo "(no tampered.out was written)"

step "Step 4 (owner): a simulated SGX platform, and the measurement of the workload she approves"
show ppml sim init sim
mkdir app
cp "$examples/hello/hello.py" app/
mkdir server
show ppml serve setup server --host localhost
show ppml manifest render "$examples/hello/hello.manifest.template" -D server=localhost:$port -D app=app -D ca=server/ca.crt -D data=enc -o hello.manifest
mrenclave=$(ppml manifest measure hello.manifest)
echo "the workload's measurement (MRENCLAVE): $mrenclave"

step "Step 5 (owner): the provisioning server: her key, a policy that admits exactly that measurement"
cat > server/server.toml <<TOML
listen = "127.0.0.1:$port"
tls_cert = "server.crt"
tls_key = "server.key"
store = "sqlite:ppml.db"
master_key_file = "master.key"
sim_platforms = ["../sim"]

[[workload]]
name = "hello"
tee = "sgx"
mrenclave = ["$mrenclave"]
allow_debug = false
accept_tcb = ["UpToDate"]
allow_simulated = true
keys = ["default"]
TOML
show ppml key import default -w wrap_key --config server/server.toml
ppml serve --config server/server.toml 2> server/server.log &
server_pid=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
echo "server started (log in demo/server/server.log)"

step "Step 6 (cloud): ppml run checks the workload, attests over RA-TLS, gets the key, runs it"
echo "(/data is the encrypted folder enc/, decrypted transparently; what the workload writes there is encrypted)"
show ppml run hello.manifest --tee sim --sim-platform sim -v
show ppml pf inspect enc/result.txt

step "Step 7 (cloud): a changed workload measures differently and is refused"
echo 'print("exfiltrate")' >> app/hello.py
ppml manifest render "$examples/hello/hello.manifest.template" -D server=localhost:$port -D app=app -D ca=server/ca.crt -D data=enc -o changed.manifest 2>/dev/null
echo "the changed workload's measurement: $(ppml manifest measure changed.manifest)"
if ppml run changed.manifest --tee sim --sim-platform sim; then
	echo "demo: the changed workload ran with the key" >&2
	exit 1
fi

step "Step 8 (owner): the audit log, then the server stops"
show ppml audit --config server/server.toml
kill "$server_pid"
wait "$server_pid" 2>/dev/null || true
server_pid=""

step "Step 9 (owner): decrypt the result, and the inputs to compare with the originals"
show ppml pf decrypt -V -w wrap_key -i enc/result.txt -o result.txt
cat result.txt
rm enc/result.txt
show ppml pf decrypt -V -w wrap_key -i enc -o decrypted
show diff -r plain decrypted
echo "decrypted inputs are identical to the originals"
