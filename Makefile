# The two commands of the quick start: `make demo` runs the main job, `make test` runs every test.
# Both set up what they need on a fresh Debian machine first.

export PATH := /usr/local/go/bin:$(PATH)

.PHONY: demo test setup build bench fuzz clean

demo: build
	scripts/demo.sh

test: setup
	@echo "test: formatting and go vet"
	@test -z "$$(gofmt -l .)" || { gofmt -l .; echo "gofmt: the files above need formatting"; exit 1; }
	go vet ./...
	go vet -tags nvml ./attest/nvidia/nvml ./cmd/ppml
	@echo "test: every package's tests, the PyTorch demo and training end to end among them (a few minutes)"
	go test ./...
	@echo "test: the NVML attester as built with -tags nvml, against a fake NVML library in C"
	go test -tags nvml ./attest/nvidia/nvml
	@echo "test: the concurrent packages again under the race detector"
	go test -race -short ./pf/... ./encfs ./trustfs ./store ./provision/... ./internal/...

build: setup
	go build -buildvcs=auto -o bin/ppml ./cmd/ppml

setup:
	@scripts/setup.sh

# Benchmarks against their yardsticks; see docs/benchmarks.md.
bench: build
	go run ./bench/pf
	go run ./bench/provision
	go run ./bench/pytorch
	go run ./bench/torchload
	go test -run '^$$' -bench . ./pf
	go test -run '^$$' -bench 'Verify$$' -cpu 1 ./attest/sgx ./attest/sim

# A short fuzzing round over every fuzz target of every package.
FUZZTIME ?= 30s
fuzz: setup
	for pkg in $$(go list ./...); do \
		for target in $$(go test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			go test -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 200x $$pkg || exit 1; \
		done; \
	done

clean:
	rm -rf bin demo
