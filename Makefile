# PipelineInPod. The two commands a new user needs:
#   make demo   bring up a local cluster (unless KUBECONFIG is set), install, run an example Pipeline in one Pod
#   make test   unit tests, then e2e and conformance on the local cluster (or the one KUBECONFIG names)
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
CONFORMANCE_DIR ?= $(abspath ../shared/conformance)
export PIP_CONFORMANCE_DIR := $(CONFORMANCE_DIR)

.PHONY: build unit test e2e conformance bench bench-render fuzz demo cluster-up cluster-down fmt vet

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
