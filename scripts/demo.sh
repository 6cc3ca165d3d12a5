#!/bin/bash
# The PyTorch PPML tutorial's whole flow (Gramine's "PyTorch PPML framework tutorial"), done with
# ppml on the simulated platform and the tutorial's own workload (examples/pytorch): the model
# owner makes her model and encrypts it with the image and the classes; her secret provisioning
# server admits exactly the measurement of the workload she approves; on the untrusted machine
# ppml run checks the workload, attests over RA-TLS, receives the key and runs PyTorch with the
# encrypted files decrypted transparently, writing result.txt encrypted; a changed script is
# refused, when the workload opens it or by the server; the owner reads the audit log, decrypts
# result.txt and finds what a native run writes.
#
# It works in one folder laid out as the tutorial's (plaintext/, files/wrap_key, ssl/ca.crt, the
# encrypted files next to pytorchexample.py), demo/ by default, which each run starts afresh.
#   PPML_DEMO_DIR   the folder (one the demo made before, or an empty or new one)
#   PPML_DEMO_PORT  the provisioning server's port on 127.0.0.1 (44333)
#   PPML_BIN        the folder of the ppml binary (bin/)
#   PPML_DEMO_TEE   the simulated platform: sim (SGX, the default), tdx or snp (a confidential VM,
#                   whose policy names the VM image and the manifest: docs/cvm.md)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
PATH="${PPML_BIN:-$repo/bin}:$PATH"
dir=${PPML_DEMO_DIR:-$repo/demo}
port=${PPML_DEMO_PORT:-44333}
python=/usr/bin/python3
example=$repo/examples/pytorch
tee=${PPML_DEMO_TEE:-sim}
case $tee in
sim | tdx | snp) ;;
*) echo "demo: PPML_DEMO_TEE=$tee: want sim, tdx or snp" >&2; exit 2 ;;
esac

step() { printf '\n\033[1m== %s ==\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }
fail() { echo "demo: $*" >&2; exit 1; }

# Start afresh, removing only a folder that is the default one, one the demo made, or empty.
if [ -d "$dir" ] && [ "$dir" != "$repo/demo" ] && [ ! -e "$dir/.ppml-demo" ] && [ -n "$(ls -A "$dir")" ]; then
	fail "$dir is not empty and not a demo folder: choose another PPML_DEMO_DIR"
fi
rm -rf "$dir"
mkdir -p "$dir"
touch "$dir/.ppml-demo"
cd "$dir"
server_pid=""
trap '[ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; true' EXIT

step "Prerequisites: Debian's PyTorch and ppml (make demo installed and built what was missing)"
show "$python" -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__)'
show command -v ppml

step "The model owner's files (plaintext/): the model, the image and the classes"
echo "(no pretrained weights can be downloaded here: make-model.py builds AlexNet from a fixed seed and saves the whole model)"
mkdir plaintext
show "$python" "$example/make-model.py" plaintext
cp "$example/classes.txt" plaintext/
cp "$example/pytorchexample.py" .
ls -l plaintext

step "Executing native PyTorch (owner's machine): the result to expect"
(cd plaintext && show "$python" ../pytorchexample.py)
mv plaintext/result.txt native-result.txt
cat native-result.txt
echo

step "Step 1 (owner): generate the wrap key and encrypt the input files"
mkdir files
show ppml pf gen-key -w files/wrap_key
for f in input.jpg classes.txt alexnet-pretrained.pt; do
	show ppml pf encrypt -w files/wrap_key -i "plaintext/$f" -o "$f"
done

step "Step 2 (cloud): the encrypted files on the untrusted machine: all it can tell, and tampering is caught"
show ppml pf inspect alexnet-pretrained.pt
cp alexnet-pretrained.pt tampered.pt
# Flip every bit of one byte in the middle (writing a fixed byte would change nothing where the
# ciphertext already holds it, once in 256 runs).
byte=$(dd if=tampered.pt bs=1 skip=100000000 count=1 status=none | od -An -tu1)
printf "\\$(printf %03o $((byte ^ 255)))" | dd of=tampered.pt bs=1 seek=100000000 conv=notrunc status=none
if ppml pf decrypt -w files/wrap_key -i tampered.pt -o tampered.out; then
	fail "tampering went unnoticed"
fi
test ! -e tampered.out && echo "(no tampered.out was written)"
rm tampered.pt

case $tee in
sim)
	step "Preparing secret provisioning (owner): a simulated SGX platform, the server's certificates"
	show ppml sim init sim
	;;
tdx)
	step "Preparing secret provisioning (owner): a simulated TDX platform (its TD is the CVM image), the server's certificates"
	show ppml sim init sim --tee tdx | tee sim.txt
	;;
snp)
	step "Preparing secret provisioning (owner): a simulated SEV-SNP platform (its guest is the CVM image), the server's certificates"
	show ppml sim init sim --tee snp | tee sim.txt
	;;
esac
show ppml serve setup secret_prov --host localhost --listen 127.0.0.1:$port --sim-platform sim
mkdir ssl
show cp secret_prov/ca.crt ssl/ca.crt

step "Preparing the manifest (owner): the workload she approves, and its measurement"
render=(ppml manifest render "$example/pytorch.manifest.template" -D entrypoint=/usr/bin/python3
	-D arch_libdir=/lib/x86_64-linux-gnu -D server=localhost:$port)
show "${render[@]}" -o pytorch.manifest
measurement=$(ppml manifest measure pytorch.manifest)
if [ "$tee" = sim ]; then
	echo "the workload's measurement (MRENCLAVE): $measurement"
else
	echo "the workload's measurement (in the report data of the VM's evidence): $measurement"
fi

step "Steps 4-5 (owner): start the secret provisioning server, whose policy admits exactly that measurement"
case $tee in
sim) show ppml serve add-workload pytorch.manifest --config secret_prov/server.toml --tee sim ;;
tdx | snp)
	# The VM image (MRTD, or the SEV-SNP launch measurement) and the manifest, both.
	image=$(awk '$1 == "mrtd" || $1 == "measurement" { print $1 " = [\"" $2 "\"]" }' sim.txt)
	# An SEV-SNP workload names the oldest TCB it admits: here the simulated platform's.
	tcb=$(awk '$1 == "min_tcb" { sub(/^min_tcb /, ""); print "min_tcb = " $0 }' sim.txt)
	cat >> secret_prov/server.toml <<-EOF

		[[workload]]
		name = "pytorch"
		tee = "$tee"
		$image
		$tcb
		manifest = ["$measurement"]
		allow_simulated = true
		keys = ["default"]
	EOF
	;;
esac
cat secret_prov/server.toml
show ppml key import default -w files/wrap_key --config secret_prov/server.toml
ppml serve --config secret_prov/server.toml 2> secret_prov/server.log &
server_pid=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
kill -0 "$server_pid" 2>/dev/null || { cat secret_prov/server.log >&2; fail "the server did not start"; }
echo "the server listens on localhost:$port (log in secret_prov/server.log)"

step "Steps 3, 6-8 (cloud): ppml run checks the workload, attests over RA-TLS, gets the key and runs PyTorch"
echo "(the model, image and classes are decrypted as PyTorch reads them; result.txt is encrypted as it writes it)"
show ppml run pytorch.manifest --tee $tee --sim-platform sim -v
show ppml pf inspect result.txt

step "A changed script (cloud) is refused"
echo 'print(open("classes.txt").read())  # leak the classes' >> pytorchexample.py
show tail -n 2 pytorchexample.py
echo "-- with the approved manifest, the workload gets its key, but the script, checked when it opens it, is refused"
echo "   (Permission denied), and ppml's log names it:"
if ppml run pytorch.manifest --tee $tee --sim-platform sim; then
	fail "the changed script ran"
fi
echo "-- with a manifest made for the changed script, the server refuses its measurement:"
"${render[@]}" -o changed.manifest 2>/dev/null
echo "the changed workload's measurement: $(ppml manifest measure changed.manifest)"
if ppml run changed.manifest --tee $tee --sim-platform sim; then
	fail "the changed script ran with the key"
fi

step "Stop the server (owner); its audit log"
show ppml audit --config secret_prov/server.toml
kill "$server_pid"
wait "$server_pid" 2>/dev/null || true
server_pid=""

step "Step 8 (owner): decrypt the result"
show ppml pf decrypt -V -w files/wrap_key -i result.txt -o plaintext/result.txt
show cat plaintext/result.txt
echo
show cmp plaintext/result.txt native-result.txt
echo "the confidential result is identical, byte for byte, to the native run's"
