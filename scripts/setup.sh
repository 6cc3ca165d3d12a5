#!/bin/sh
# Installs what ppml's build, demo and tests need on a Debian machine, skipping what is there.
set -eu

# Debian packages: openssl is the benchmarks' yardstick; fuse3 and python3 serve ppml run and
# its tests (workloads in a private mount namespace, encrypted folders over FUSE); PyTorch,
# torchvision, scikit-learn (its digits and sample images) and Pillow run the examples, the demo
# and their tests.
packages="openssl fuse3 python3 python3-torch python3-torchvision python3-sklearn python3-pil"

missing=""
for p in $packages; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	echo "setup: installing Debian packages:$missing"
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	$sudo apt-get update -qq
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi

PATH=/usr/local/go/bin:$PATH
if ! command -v go >/dev/null; then
	echo "setup: Go is missing; install Go 1.26 or later in /usr/local/go (https://go.dev/dl)" >&2
	exit 1
fi
go mod download
