# pinhole: `make run` starts the server with its defaults, `make test` is
# what CI runs (.ci/run). Targets other issues fill: test-web.

GO        ?= go
SWAG      := $(GO) run github.com/swaggo/swag/cmd/swag
# swag reads the general API info from main.go and the route annotations
# from handlers; media, store and web hold no annotations.
SWAG_ARGS := init -q -g main.go --outputTypes json,yaml,go --packageName openapi --exclude web,media,store
# The whole suite takes a few minutes on 2 cores; 15m stops a hung test
# well inside CI's budget.
TEST_TIMEOUT ?= 15m

.PHONY: run build test setup lint openapi openapi-check gotest bench bench-compare fuzz test-web clean

run: ## start pinhole on :8080 with the default port range 10111-10115
	$(GO) run . $(ARGS)

build: ## build ./pinhole
	$(GO) build -o pinhole .

test: setup lint openapi-check gotest test-web ## everything CI runs

setup: ## install what a fresh machine lacks (browser and NAT tests)
	@if [ "$$(id -u)" = 0 ]; then \
		missing=""; \
		command -v chromium >/dev/null || missing="$$missing chromium"; \
		command -v nft >/dev/null || missing="$$missing nftables"; \
		command -v ip >/dev/null || missing="$$missing iproute2"; \
		if [ -n "$$missing" ]; then \
			echo "setup: installing$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
		fi; \
	fi
	@if [ -f web/test/package.json ]; then cd web/test && npm ci --no-audit --no-fund; fi

lint: ## gofmt must list nothing; go vet must pass
	@out="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './web/test/node_modules/*'))"; \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

openapi: ## regenerate openapi/ from the swag annotations
	$(SWAG) $(SWAG_ARGS) -o openapi

openapi-check: ## fail when openapi/ is stale
	@tmp="$$(mktemp -d)"; trap 'rm -rf "$$tmp"' EXIT; \
	$(SWAG) $(SWAG_ARGS) -o "$$tmp" && \
	for f in swagger.json swagger.yaml docs.go; do \
		diff -u "openapi/$$f" "$$tmp/$$f" >/dev/null || { echo "openapi/$$f is stale: run make openapi"; diff -u "openapi/$$f" "$$tmp/$$f" | head -40; exit 1; }; \
	done; echo "openapi: up to date"

gotest: ## go tests with the race detector
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...

bench: ## end-to-end benchmarks on loopback, ~4 min (BENCHMARKS.md); BENCH_COUNT=5 for benchstat
	@echo "machine: nproc $$(nproc),$$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), load $$(cut -d' ' -f1-3 /proc/loadavg)"
	$(GO) test -run '^$$' -bench . -benchtime 1x -count $(or $(BENCH_COUNT),1) -timeout 30m ./bench/
	$(GO) test -run '^$$' -bench . -benchmem -count $(or $(BENCH_COUNT),1) ./media/ ./store/

# bench-compare runs BenchmarkCompare (bench/compare_test.go) on pinhole and,
# with MEDIAMTX=/path/to/mediamtx, on that mediamtx binary (configured by
# the benchmark: loopback only, WebRTC alone), the servers taking turns, and
# prints every figure as pinhole / mediamtx. Never part of `make test`.
COMPARE_OUT ?= $(or $(TMPDIR),/tmp)/pinhole-bench-compare.txt

bench-compare: ## pinhole vs mediamtx on loopback, ~4 min (MEDIAMTX=/path/to/mediamtx)
	@echo "machine: nproc $$(nproc),$$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), load $$(cut -d' ' -f1-3 /proc/loadavg)"
	@if [ -z "$(MEDIAMTX)" ]; then \
		echo "bench-compare: MEDIAMTX is not set, running pinhole alone."; \
		echo "  For the comparison, point MEDIAMTX at a mediamtx binary (a release from the"; \
		echo "  bluenviron/mediamtx project, or one built from its source with CGO_ENABLED=0):"; \
		echo "  make bench-compare MEDIAMTX=/path/to/mediamtx"; \
	elif [ ! -x "$(MEDIAMTX)" ]; then echo "bench-compare: $(MEDIAMTX) is not an executable"; exit 1; fi
	$(GO) test -run '^$$' -bench '^BenchmarkCompare$$' -benchtime 1x -count $(or $(BENCH_COUNT),1) -timeout 30m ./bench/ -args -compare -mediamtx="$(MEDIAMTX)" | tee $(COMPARE_OUT)
	@echo "load at the end: $$(cut -d' ' -f1-3 /proc/loadavg)"
	@awk '/^BenchmarkCompare\// { \
		split($$1, p, "/"); sc = p[2]; t = p[3]; sub(/-[0-9]+$$/, "", t); \
		for (i = 5; i < NF; i += 2) { k = sc " " $$(i+1); if (!(k in seen)) { seen[k] = 1; order[++n] = k }; v[k, t] = $$i } \
	} END { \
		printf "%-10s %-22s %12s %12s %8s\n", "scenario", "figure", "pinhole", "mediamtx", "ratio"; \
		for (j = 1; j <= n; j++) { k = order[j]; split(k, f, " "); a = v[k, "pinhole"]; m = v[k, "mediamtx"]; \
			r = (m != "" && m + 0 != 0 && a != "") ? sprintf("%.2f", a / m) : "-"; \
			printf "%-10s %-22s %12s %12s %8s\n", f[1], f[2], a, (m == "" ? "-" : m), r } \
	}' $(COMPARE_OUT)

# Each fuzz target runs FUZZTIME; new coverage is minimized for at most
# FUZZMINTIME (Go's default, 60 s, stalls targets whose inputs build real
# peer connections). The seed corpora in testdata/fuzz run in every
# `make test` as plain tests.
FUZZTIME    ?= 20s
FUZZMINTIME ?= 5s

fuzz: ## run every fuzz target for FUZZTIME (default 20s) each
	@set -e; for pkg in $$($(GO) list ./...); do \
		for fn in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "fuzz: $$pkg $$fn"; \
			$(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINTIME) $$pkg; \
		done; \
	done

test-web: ## browser tests, when present
	@if [ -x web/test/run.sh ]; then web/test/run.sh; elif [ -f web/test/run.sh ]; then bash web/test/run.sh; else echo "test-web: no web/test/run.sh"; fi

clean:
	rm -f pinhole
