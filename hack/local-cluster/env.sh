# shellcheck shell=bash
# Source me: `source hack/local-cluster/env.sh` (from any directory) after hack/local-cluster/up.sh.
# Exports the kubeconfig, PATH with the built kubectl/tkn (and Go), and the image names the cluster has.
_pip_lc_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export PIP_CLUSTER_DIR=${PIP_CLUSTER_DIR:-/var/tmp/pipelineinpod-cluster}
export KUBECONFIG=$PIP_CLUSTER_DIR/kubeconfig
case ":$PATH:" in *":$PIP_CLUSTER_DIR/bin:"*) ;; *) export PATH=$PIP_CLUSTER_DIR/bin:/usr/local/go/bin:$PATH ;; esac
export PIP_LOCAL_CLUSTER_HACK=$_pip_lc_dir
export PIP_CLUSTER_LOGS=$PIP_CLUSTER_DIR/run/logs

# This project's images (hack/local-cluster/build-project-images.sh builds and loads them).
export PIP_IMAGE_TAG=${PIP_IMAGE_TAG:-dev}
export PIP_ENTRYPOINT_IMAGE=pipelineinpod.local/pipelineinpod/entrypoint:$PIP_IMAGE_TAG
export PIP_CONTROLLER_IMAGE=pipelineinpod.local/pipelineinpod/controller:$PIP_IMAGE_TAG

# Tekton Pipelines v1.15.1's images as its controller uses them (each binary at /ko-app/<name>).
export TEKTON_VERSION=v1.15.1
export TEKTON_ENTRYPOINT_IMAGE=pipelineinpod.local/tektoncd/entrypoint:$TEKTON_VERSION
export TEKTON_NOP_IMAGE=pipelineinpod.local/tektoncd/nop:$TEKTON_VERSION
export TEKTON_WORKINGDIRINIT_IMAGE=pipelineinpod.local/tektoncd/workingdirinit:$TEKTON_VERSION
export TEKTON_SIDECARLOGRESULTS_IMAGE=pipelineinpod.local/tektoncd/sidecarlogresults:$TEKTON_VERSION
export TEKTON_SHELL_IMAGE=pipelineinpod.local/tektoncd/shell:$TEKTON_VERSION   # busybox: sh, touch, chmod, cat, cp

# Stand-ins for the conformance corpus images, each as :latest and :local (use imagePullPolicy IfNotPresent with
# :latest, or the :local tag). busybox/alpine = Debian busybox-static; ubuntu/bash = Debian bookworm minbase.
export PIP_BUSYBOX_IMAGE=mirror.gcr.io/busybox:local
export PIP_ALPINE_IMAGE=mirror.gcr.io/alpine:local
export PIP_BASH_IMAGE=mirror.gcr.io/bash:local
export PIP_UBUNTU_IMAGE=mirror.gcr.io/ubuntu:local
unset _pip_lc_dir

# The local image registry (hack/local-cluster/registry.sh) and how hack/with-cluster.sh runs ko against it:
# KO_DOCKER_REPO, and the registry's copy of ko's default base image (KO_DEFAULTBASEIMAGE).
export PIP_REGISTRY=${PIP_REGISTRY:-127.0.0.1:5000}
export PIP_KO_DOCKER_REPO=$PIP_REGISTRY/pipelineinpod
export PIP_KO_BASE_IMAGE=$PIP_REGISTRY/cgr.dev/chainguard/static:latest
# The same registry as pods reach it (the pod bridge's address, DNATed to it by tekton-resolvers.sh): what a pod that
# talks to the registry itself names, e.g. a Tekton bundle for the bundles resolver. containerd needs no such name.
export PIP_POD_REGISTRY=${PIP_POD_REGISTRY:-10.244.0.1:${PIP_REGISTRY##*:}}
# Debian minbase with git and tini: the base of Tekton's resolvers image (tekton-resolvers.sh), served by the registry.
export PIP_GIT_IMAGE=ghcr.io/tektoncd/plumbing/tini-git:local
