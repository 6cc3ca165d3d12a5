#!/bin/sh
# Installs what ppml's build, demo and tests need on a Debian machine, skipping what is there.
set -eu

# Debian packages: openssl and gocryptfs are the benchmarks' yardsticks; fuse3 and python3 serve
# ppml run and its tests (workloads in a private mount namespace, encrypted folders over FUSE); PyTorch,
# torchvision, scikit-learn (its digits and sample images) and Pillow run the examples, the demo
# and their tests. PostgreSQL (15 on Debian 12) is the shared store whose tests start a server of
# their own (internal/pgtest): they are skipped without it. gcc builds the fake NVML library of
# attest/nvidia/nvml's tests.
packages="gcc openssl gocryptfs fuse3 python3 python3-torch python3-torchvision python3-sklearn python3-pil postgresql"

missing=""
for p in $packages; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	echo "setup: installing Debian packages:$missing (PyTorch alone is about 1 GB: several minutes)"
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	# A freshly booted machine often runs unattended upgrades: wait for dpkg's lock (up to 10
	# minutes) instead of failing at once. Progress shows one line a package.
	apt="$sudo env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600"
	$apt update -qq
	$apt install -y -o Dpkg::Progress-Fancy=0 $missing | grep -E '^(Get|Unpacking|Setting up)' || true
	for p in $missing; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || { echo "setup: $p did not install" >&2; exit 1; }
	done
fi

PATH=/usr/local/go/bin:$PATH
if ! command -v go >/dev/null; then
	echo "setup: Go is missing; install Go 1.26 or later in /usr/local/go (https://go.dev/dl)" >&2
	exit 1
fi
echo "setup: Go modules"
go mod download
