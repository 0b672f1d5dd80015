# Pallarel: see README.md.
GO ?= go
export PATH := /usr/local/go/bin:$(PATH)
# Everything is pure Go; building without cgo everywhere lets the tests, the
# static-image build check and the binaries share one build cache.
export CGO_ENABLED := 0

.PHONY: run test build vet fuzz bench-engine bench-pipeline chaos compose-check

# All-in-one local mode: embedded Redis-protocol server, SQLite, local storage,
# in-process workers. Open the URL it prints.
# The first build compiles every dependency (minutes on a slow machine):
# say so, and list packages as they compile (-v) instead of sitting silent.
run:
	@echo "Compiling the server (the first build takes a few minutes; later ones seconds)..."
	$(GO) build -v -o bin/ ./cmd/server
	@echo "Starting bin/server"
	./bin/server

build:
	$(GO) build -o bin/ ./cmd/...

vet:
	$(GO) vet ./...
	@# shadow (pinned in go.mod's tool block): any shadowed name but err,
	@# which the `if err := f(); err != nil` idiom shadows by design (and
	@# the go command's download notes on a fresh module cache).
	@out=$$($(GO) tool shadow -test=false ./... 2>&1 | grep -v -e 'declaration of "err" shadows' -e '^go: downloading '); \
		if [ -n "$$out" ]; then echo "$$out"; exit 1; fi

# The whole test suite, against real Redis, MariaDB, PostgreSQL and Ruby Sidekiq.
test: vet
	$(GO) test -count=1 -timeout 25m ./...
	$(MAKE) fuzz FUZZTIME=30000x

# Bounded fuzzing of the parsers (longer: make fuzz FUZZTIME=5m). make test
# bounds it by executions, not time: a -fuzztime duration can fail with
# "context deadline exceeded" on a loaded machine when the deadline races a
# worker's last input (go.dev/issue/75804), which is not a finding.
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParseJob$$' -fuzztime $(FUZZTIME) ./sidekiq/
	$(GO) test -run '^$$' -fuzz '^FuzzReader$$' -fuzztime $(FUZZTIME) ./csvrows/
	$(GO) test -run '^$$' -fuzz '^FuzzClassify$$' -fuzztime $(FUZZTIME) ./render/
	$(GO) test -run '^$$' -fuzz '^FuzzXLSXTemplate$$' -fuzztime $(FUZZTIME) ./render/

bench-engine:
	bash bench/engine.sh

bench-pipeline:
	bash bench/pipeline.sh

# The fault suite's long form: bigger inputs (the short form runs in make test).
chaos:
	$(GO) test -count=1 -tags chaoslong -timeout 90m -v ./chaos/

compose-check:
	docker-compose -f docker-compose.yml config -q
