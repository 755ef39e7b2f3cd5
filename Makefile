# PipelineInPod. The two commands a new user needs:
#   make demo   bring up a local cluster (unless KUBECONFIG is set), install, run an example Pipeline in one Pod
#   make test   unit tests, then e2e and conformance on the local cluster (or the one KUBECONFIG names)
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
# Empty: Tekton's examples from the pinned module (test/conformance/corpus). A directory
# runs that directory instead.
CONFORMANCE_DIR ?=
# make release VERSION=v0.1.0 [KO_DOCKER_REPO=registry/path]
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
RELEASE_DIR ?= release

.PHONY: build unit test e2e conformance bench bench-render demo cluster-up cluster-down fmt vet release

build:
	$(GO) build ./...
	$(GO) build -o bin/pipelineinpod ./cmd/pipelineinpod

fmt:
	@out=$$(gofmt -l cmd pkg test); if [ -n "$$out" ]; then echo "gofmt: $$out"; exit 1; fi

vet:
	$(GO) vet ./...

unit: fmt vet
	$(GO) test ./...

test: unit e2e conformance

e2e:
	hack/with-cluster.sh $(GO) test -tags e2e -count=1 -timeout 30m -v ./test/e2e/

conformance:
	hack/with-cluster.sh $(GO) run ./test/conformance $(if $(CONFORMANCE_DIR),-dir $(abspath $(CONFORMANCE_DIR)))

# Go benchmarks of the pure stages: rendering a 200-task pipeline, in-pod hand-off latency.
bench-render:
	$(GO) test ./pkg/render ./pkg/executor -run XXX -bench . -benchtime 5x

bench:
	hack/with-cluster.sh $(GO) run ./test/bench

demo:
	hack/demo.sh

cluster-up:
	hack/local-cluster/up.sh

cluster-down:
	hack/local-cluster/down.sh

# One YAML with every object of config/: images built for .ko.yaml's platforms, pushed to
# $KO_DOCKER_REPO tagged VERSION, and referred to by digest. Users install it with
# kubectl apply -f release/pipelineinpod-VERSION.yaml.
release:
	@test -n "$$KO_DOCKER_REPO" || { echo "release: set KO_DOCKER_REPO to the registry to push the images to"; exit 1; }
	@command -v ko >/dev/null || { echo "release: ko is not on PATH"; exit 1; }
	mkdir -p $(RELEASE_DIR)
	ko resolve --tags $(VERSION) -f config/ > $(RELEASE_DIR)/pipelineinpod-$(VERSION).yaml.tmp
	mv $(RELEASE_DIR)/pipelineinpod-$(VERSION).yaml.tmp $(RELEASE_DIR)/pipelineinpod-$(VERSION).yaml
	@echo "wrote $(RELEASE_DIR)/pipelineinpod-$(VERSION).yaml"
