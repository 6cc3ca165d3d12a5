#!/bin/bash
# Confidential training on the simulated platform, the flow of the PyTorch PPML tutorial applied
# to training: the data owner encrypts scikit-learn's digits (training and test sets); her
# provisioning server admits exactly two workloads, train.py and evaluate.py; under ppml run the
# first trains a network on the decrypted training set and writes the model encrypted, the
# second classifies the encrypted test images with that model and writes the accuracy
# encrypted; the owner decrypts the evaluation. Nothing in plaintext leaves her machine but the
# scripts.
#
#   examples/training/run.sh [DIR]
#
# DIR (demo/training by default) is made afresh: it must be new, empty, or made by this script.
#   PPML_DEMO_PORT  the provisioning server's port on 127.0.0.1 (44335)
#   PPML_BIN        the folder of the ppml binary (bin/, which make build makes)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
PATH="${PPML_BIN:-$repo/bin}:$PATH"
dir=${1:-$repo/demo/training}
port=${PPML_DEMO_PORT:-44335}
python=/usr/bin/python3

step() { printf '\n\033[1m== %s ==\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }
fail() { echo "training: $*" >&2; exit 1; }

if [ -d "$dir" ] && [ ! -e "$dir/.ppml-training" ] && [ -n "$(ls -A "$dir")" ]; then
	fail "$dir is not empty and was not made by this script: choose another folder"
fi
rm -rf "$dir"
mkdir -p "$dir"
touch "$dir/.ppml-training"
cd "$dir"
server_pid=""
trap '[ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; true' EXIT

step "The data owner's files (plaintext/data): scikit-learn's digits, split into training and test sets"
show "$python" "$here/prepare-data.py" plaintext/data

step "Step 1 (owner): generate the wrap key and encrypt the data set"
mkdir files
show ppml pf gen-key -w files/wrap_key
mkdir enc
show ppml pf encrypt -w files/wrap_key -i plaintext/data -o enc/data
mkdir enc/output

step "Preparing secret provisioning and the manifests (owner): one measurement for each script"
show ppml sim init sim
show ppml serve setup secret_prov --host localhost
mkdir ssl app
cp secret_prov/ca.crt ssl/
cp "$here/train.py" "$here/evaluate.py" "$here/net.py" app/
for script in train evaluate; do
	show ppml manifest render "$here/training.manifest.template" -D script=$script.py -D server=localhost:$port -o $script.manifest
done
train=$(ppml manifest measure train.manifest)
evaluate=$(ppml manifest measure evaluate.manifest)
echo "train.py's measurement: $train"
echo "evaluate.py's measurement: $evaluate"

step "Steps 4-5 (owner): start the secret provisioning server, whose policy admits exactly these two"
cat > secret_prov/server.toml <<TOML
listen = "127.0.0.1:$port"
tls_cert = "server.crt"
tls_key = "server.key"
store = "sqlite:ppml.db"
master_key_file = "master.key"
sim_platforms = ["../sim"]

[[workload]]
name = "training"
tee = "sgx"
mrenclave = ["$train", "$evaluate"]
allow_debug = false
accept_tcb = ["UpToDate"]
allow_simulated = true
keys = ["default"]
TOML
show ppml key import default -w files/wrap_key --config secret_prov/server.toml
ppml serve --config secret_prov/server.toml 2> secret_prov/server.log &
server_pid=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
kill -0 "$server_pid" 2>/dev/null || { cat secret_prov/server.log >&2; fail "the server did not start"; }

step "Steps 3, 6-8 (cloud): confidential training; the trained model is written encrypted"
show ppml run train.manifest --tee sim --sim-platform sim
show ppml pf inspect enc/output/model.pt

step "Steps 3, 6-8 (cloud): confidential inference on the encrypted test images with that model"
show ppml run evaluate.manifest --tee sim --sim-platform sim

step "Stop the server (owner); its audit log"
show ppml audit --config secret_prov/server.toml
kill "$server_pid"
wait "$server_pid" 2>/dev/null || true
server_pid=""

step "Step 8 (owner): decrypt the evaluation"
show ppml pf decrypt -V -w files/wrap_key -i enc/output/evaluation.txt -o plaintext/evaluation.txt
show cat plaintext/evaluation.txt
accuracy=$(awk '$1 == "accuracy" { print $2 }' plaintext/evaluation.txt)
awk -v a="$accuracy" 'BEGIN { exit !(a > 0.95) }' || fail "accuracy $accuracy is not above 0.95"
echo "accuracy above 95%"
