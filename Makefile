GO      ?= go
BINARY  := listenq_exporter
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo unknown)
REV     := $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w \
	-X github.com/prometheus/common/version.Version=$(VERSION) \
	-X github.com/prometheus/common/version.Revision=$(REV)

.PHONY: build run test lint fuzz bench docker clean

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BINARY) ./cmd/listenq_exporter

run:
	$(GO) run ./cmd/listenq_exporter

# The whole suite, installing its tools; what CI runs.
test:
	./scripts/test.sh

lint:
	$(GO) vet ./...
	golangci-lint run ./...

fuzz:
	FUZZTIME=2500000x ./scripts/test.sh

bench:
	bash bench/run.sh

docker:
	docker build --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REV) -t listenq_exporter:$(VERSION) .

clean:
	rm -f $(BINARY)
