# The two commands of the quick start: `make demo` runs the main job, `make test` runs every test.
# Both set up what they need on a fresh Debian machine first.

export PATH := /usr/local/go/bin:$(PATH)

.PHONY: demo test setup build bench fuzz clean

demo: build
	scripts/demo.sh

test: setup
	@test -z "$$(gofmt -l .)" || { gofmt -l .; echo "gofmt: the files above need formatting"; exit 1; }
	go vet ./...
	go test ./...
	go test -race -short ./pf ./internal/...

build: setup
	go build -o bin/ppml ./cmd/ppml

setup:
	@scripts/setup.sh

# Benchmarks against their yardsticks; see docs/benchmarks.md.
bench: build
	go run ./bench/pf
	go test -run '^$$' -bench . ./pf

# A short fuzzing round over every fuzz target.
FUZZTIME ?= 30s
fuzz: setup
	for target in FuzzOpen FuzzMetadata FuzzFileOps; do go test -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) ./pf || exit 1; done

clean:
	rm -rf bin demo
