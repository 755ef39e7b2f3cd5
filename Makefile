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

.PHONY: build unit test e2e conformance bench bench-render fuzz demo cluster-up cluster-down fmt imports vet lint \
  golangci-lint shellcheck release

MODULE := github.com/pipelineinpod/pipelineinpod
GO_DIRS := cmd pkg test
SHELL_SCRIPTS := $(wildcard hack/*.sh hack/local-cluster/*.sh) .ci/run

build:
	$(GO) build ./...
	$(GO) build -o bin/pipelineinpod ./cmd/pipelineinpod
	$(GO) build -o bin/tkn-pipelineinpod ./cmd/tkn-pipelineinpod

# gofmt, and goimports with the project's imports in a group of their own (`make imports` rewrites them so).
# hack/tools.sh installs each linter on first use and prints its path.
fmt:
	@out=$$(gofmt -l $(GO_DIRS)); if [ -n "$$out" ]; then echo "gofmt: $$out"; exit 1; fi
	@goimports=$$(hack/tools.sh goimports) && out=$$("$$goimports" -local $(MODULE) -l $(GO_DIRS)) && \
	  if [ -n "$$out" ]; then echo "goimports (make imports fixes): $$out"; exit 1; fi

imports:
	@goimports=$$(hack/tools.sh goimports) && "$$goimports" -local $(MODULE) -w $(GO_DIRS)

vet:
	$(GO) vet ./...

lint: fmt golangci-lint shellcheck

golangci-lint:
	@golangci_lint=$$(hack/tools.sh golangci-lint) && "$$golangci_lint" run ./...

shellcheck:
	@shellcheck=$$(hack/tools.sh shellcheck) && "$$shellcheck" -x $(SHELL_SCRIPTS)

unit: fmt vet lint
	$(GO) test ./...

test: unit e2e conformance

# Go native fuzzing of what hostile input reaches: YAML through every render stage, the
# reporter's log as the controller reads it, and run-time substitution of results.
# `make unit` runs their seed corpora (plain go test does); this searches further.
FUZZTIME ?= 10s
fuzz:
	$(GO) test ./pkg/render -run '^$$' -fuzz '^FuzzRender$$' -fuzztime $(FUZZTIME)
	$(GO) test ./pkg/plan -run '^$$' -fuzz '^FuzzReadReport$$' -fuzztime $(FUZZTIME)
	$(GO) test ./pkg/executor -run '^$$' -fuzz '^FuzzSubstitution$$' -fuzztime $(FUZZTIME)

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
