#!/bin/sh
# The owner's side of the PyTorch PPML flow: make a key, encrypt the model and inputs into
# Gramine protected files, look at what an untrusted host sees, show that tampering is caught,
# and decrypt. Runs again and again: each run starts from an empty demo/ folder.
set -eu
cd "$(dirname "$0")/.."
PATH="$PWD/bin:$PATH"

step() { printf '\n\033[1m== %s ==\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

rm -rf demo
mkdir -p demo/plain/data
cd demo

step "Preparing the owner's files: a model, class labels and an input"
head -c $((96 << 20)) /dev/urandom > plain/alexnet-pretrained.pt
printf 'tabby cat\ntiger cat\nEgyptian cat\nlynx\n' > plain/classes.txt
head -c 150000 /dev/urandom > plain/data/input.jpg
ls -l plain plain/data

step "Step 1 (owner): generate the wrap key"
show ppml pf gen-key -w wrap_key

step "Step 2 (owner): encrypt the model and inputs; each file is bound to its path"
show ppml pf encrypt -v -w wrap_key -i plain -o encrypted

step "Step 3 (untrusted host): all it can tell without the key"
show ppml pf inspect encrypted/classes.txt

step "Step 4 (untrusted host): tampering is caught, and nothing is written"
cp encrypted/alexnet-pretrained.pt tampered.pt
printf 'X' | dd of=tampered.pt bs=1 seek=50000000 conv=notrunc status=none
if ppml pf decrypt -w wrap_key -i tampered.pt -o tampered.out; then
	echo "demo: tampering went unnoticed" >&2
	exit 1
fi
test ! -e tampered.out && echo "(no tampered.out was written)"

step "Step 5 (owner): decrypt and compare with the originals"
show ppml pf decrypt -V -w wrap_key -i encrypted -o decrypted
show diff -r plain decrypted
echo "decrypted files are identical to the originals"
