# The two commands a fresh machine needs: `make demo` and `make test`.
GO ?= go
GOBIN ?= $(shell $(GO) env GOPATH)/bin

.PHONY: demo test test-short faults bench build proto generate vet screenshots

# Start a master and two workers on loopback and run the example pipeline.
demo:
	$(GO) run ./cmd/ci demo

# Every test, with the race detector: unit, real git and go build, real
# plugin processes, and the end-to-end runs of master and worker processes.
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 30m ./...

# The tests without the slowest end-to-end runs.
test-short:
	$(GO) test -short -count=1 ./...

# The fault suite: real masters, workers and pipeline programs killed,
# frozen, flooded and misused on purpose. It fails when a promise breaks and
# ends with its figures, one `name value unit` a line. The log flood writes
# about 200 MB.
FAULT_FIGURES := $(shell mktemp -u)
faults:
	KILN_FAULT_FIGURES=$(FAULT_FIGURES) KILN_FAULT_FLOOD_LINES=300000 \
		$(GO) test -count=1 -run 'Fault' ./e2e; rc=$$?; \
		cat $(FAULT_FIGURES) 2>/dev/null; rm -f $(FAULT_FIGURES); exit $$rc

# The dashboard's browser test in Chromium, leaving a full-page PNG of each
# page in screenshots/ to look at.
screenshots:
	KILN_SCREENSHOTS=$(CURDIR)/screenshots KILN_BROWSER_TESTS=1 \
		$(GO) test -count=1 -v -run 'TestDashboardInChromium' ./web

# Benchmarks print `name value unit`, one figure a line; they never fail.
bench:
	$(GO) run ./internal/bench

build:
	$(GO) build -o bin/ci ./cmd/ci

vet:
	$(GO) vet ./...

# Regenerate the protobuf code (committed) with tools from the Go module
# proxy; no protoc download.
proto:
	$(GO) install github.com/bufbuild/buf/cmd/buf@v1.75.0
	$(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
	$(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
	cd proto && PATH="$(GOBIN):$$PATH" buf generate

# Refresh sdk.go.mod, the go.mod of the SDK that ci carries.
generate:
	$(GO) generate .
