GO      ?= go
BINARY  := listenq_exporter
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo unknown)
REV     := $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w \
	-X github.com/prometheus/common/version.Version=$(VERSION) \
	-X github.com/prometheus/common/version.Revision=$(REV)

.PHONY: build run test lint fuzz bench docker image docker-from-source clean

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

# The container engine: docker when its daemon answers, else podman, else
# docker (to say what is missing). Evaluated only by the targets below.
DOCKER = $(shell if docker info >/dev/null 2>&1; then echo docker; \
	elif command -v podman >/dev/null 2>&1; then echo podman; else echo docker; fi)
IMAGE  ?= listenq_exporter:$(VERSION)

# The image (Dockerfile): the static binary of `make build` on an empty
# base; nothing is pulled, so it builds offline.
docker: build
	$(DOCKER) build --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REV) -t $(IMAGE) .

image: docker

# The same image built from source in a golang container (Dockerfile.build),
# for machines with a registry but no Go toolchain.
docker-from-source:
	$(DOCKER) build -f Dockerfile.build --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REV) -t $(IMAGE) .

clean:
	rm -f $(BINARY)
