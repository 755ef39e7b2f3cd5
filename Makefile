# PipelineInPod. The two commands a new user needs:
#   make demo   bring up a local cluster (unless KUBECONFIG is set), install, run an example Pipeline in one Pod
#   make test   unit tests, then e2e and conformance on the local cluster (or the one KUBECONFIG names)
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
CONFORMANCE_DIR ?= $(abspath ../shared/conformance)
export PIP_CONFORMANCE_DIR := $(CONFORMANCE_DIR)

.PHONY: build unit test e2e conformance bench bench-render demo cluster-up cluster-down fmt imports vet lint \
  golangci-lint shellcheck

MODULE := github.com/pipelineinpod/pipelineinpod
GO_DIRS := cmd pkg test
SHELL_SCRIPTS := $(wildcard hack/*.sh hack/local-cluster/*.sh) .ci/run

build:
	$(GO) build ./...
	$(GO) build -o bin/pipelineinpod ./cmd/pipelineinpod

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

e2e:
	hack/with-cluster.sh $(GO) test -tags e2e -count=1 -timeout 30m -v ./test/e2e/

conformance:
	hack/with-cluster.sh $(GO) run ./test/conformance -dir $(CONFORMANCE_DIR)

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
