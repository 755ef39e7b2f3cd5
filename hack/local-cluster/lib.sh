# shellcheck shell=bash disable=SC2034
# Common settings and helpers for the local single-node cluster scripts in hack/local-cluster/.
# Sourced by every script here; not meant to be run. Everything the cluster builds or writes lives under
# $PIP_CLUSTER_DIR (default /var/tmp/pipelineinpod-cluster):
#
#   src/        generated Go wrapper/tool modules (k8s, tekton, tkn, pause)
#   bin/        kube-apiserver kubelet kube-scheduler kube-controller-manager kubectl tkn pause
#   tekton/bin/ Tekton Pipelines controller + helper binaries (entrypoint nop workingdirinit sidecarlogresults)
#   images/     OCI layouts + archives built offline with umoci (and the debootstrap rootfs cache)
#   gocache/    GOCACHE for these builds (the Go module cache is the usual `go env GOMODCACHE`)
#   pki/ conf/  certificates/kubeconfigs and component configs (regenerated when missing)
#   kubeconfig  admin kubeconfig (copy of pki/admin.kubeconfig)
#   run/        run state: pids/, logs/, etcd data, containerd root/state, kubelet root, PV dirs, netns/
#
# Only run/ is removed by `down.sh --wipe`; the build cache is never removed by these scripts.

PIP_CLUSTER_DIR=${PIP_CLUSTER_DIR:-/var/tmp/pipelineinpod-cluster}
export PIP_CLUSTER_DIR
LC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)   # hack/local-cluster
REPO_ROOT=$(cd "$LC_DIR/../.." && pwd)

# Versions (k8s v1.35.4 is the newest patch with every staging module on the proxy: docs/local-cluster.md pitfall 8).
K8S_VERSION=${K8S_VERSION:-v1.35.4}
TEKTON_VERSION=${TEKTON_VERSION:-v1.15.1}
TKN_VERSION=${TKN_VERSION:-v0.46.0}
KO_VERSION=${KO_VERSION:-v0.19.1}

D=$PIP_CLUSTER_DIR
SRC=$D/src
BIN=$D/bin
TEKTON_BIN=$D/tekton/bin
IMG=$D/images
PKI=$D/pki
CONF=$D/conf
R=$D/run
KUBECONFIG_FILE=$D/kubeconfig

# Network layout. Every listener is on 127.0.0.1; pods live on the bridge below.
NODE_NAME=localhost                 # kubelet refuses a loopback node IP (pitfall 4): name "localhost" + Hostname address type
APISERVER_PORT=6443
SERVICE_CIDR=10.0.0.0/24
KUBERNETES_SVC_IP=10.0.0.1          # the `kubernetes` Service; DNATed to 127.0.0.1:6443 for pods (see up.sh)
POD_BRIDGE=pip0
POD_SUBNET=10.244.0.0/24
POD_GATEWAY=10.244.0.1
CONTAINERD_SOCK=$R/containerd/containerd.sock

# The local image registry (Debian's docker-registry, run by registry.sh): loopback only. containerd pulls every
# name under $MIRRORED_REGISTRIES from it (registry path <host>/<path>, see up.sh's hosts.toml), and ko pushes
# there (env.sh: PIP_KO_DOCKER_REPO, PIP_KO_BASE_IMAGE; go-containerregistry speaks plain http to loopback
# registries).
REGISTRY=${PIP_REGISTRY:-127.0.0.1:5000}
MIRRORED_REGISTRIES="docker.io mirror.gcr.io cgr.dev ghcr.io gcr.io registry.k8s.io quay.io pipelineinpod.local"

# Image names.
PAUSE_IMAGE=registry.k8s.io/pause:3.10.1
TEKTON_IMAGE_PREFIX=pipelineinpod.local/tektoncd
TEKTON_HELPER_IMAGES="entrypoint nop workingdirinit sidecarlogresults"
PROJECT_IMAGE_PREFIX=pipelineinpod.local/pipelineinpod
PROJECT_IMAGE_TAG=${PIP_IMAGE_TAG:-dev}
# Stand-ins for the conformance corpus's images: each gets :latest and :local (plus docker.io/library aliases).
SHELL_IMAGE_REPOS="mirror.gcr.io/busybox mirror.gcr.io/alpine mirror.gcr.io/bash mirror.gcr.io/ubuntu"

# Sysctls the kubelet (protectKernelDefaults=false) and the bridge CNI plugin rewrite; restored by down.sh.
SAVED_SYSCTLS="vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys
  kernel.keys.root_maxbytes net.ipv4.ip_forward net.ipv4.conf.all.forwarding net.ipv6.conf.all.forwarding"

export PATH=$BIN:/usr/local/go/bin:/usr/local/sbin:/usr/sbin:/sbin:$PATH

# ---------------------------------------------------------------------------------------------- logging

log() { echo "[local-cluster $(date +%H:%M:%S)] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
now() { date +%s.%N; }
# since T0 -> seconds elapsed with one decimal
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}'; }

# ---------------------------------------------------------------------------------------------- Go

# go_env: isolate the build cache of the cluster's own binaries (3+ GB, built with -trimpath) from the
# developers' cache, never download a toolchain, build static binaries. Builds run niced: other people compile too.
go_env() {
  export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false CGO_ENABLED=0
  export GOCACHE=${PIP_GOCACHE:-$D/gocache}
  [ -n "${PIP_GOMODCACHE:-}" ] && export GOMODCACHE=$PIP_GOMODCACHE
  export GOTMPDIR=$D/tmp
  mkdir -p "$GOCACHE" "$GOTMPDIR"
  command -v go >/dev/null || die "go not found (expected /usr/local/go/bin/go)"
}
gobuild() { nice -n "${PIP_NICE:-10}" go build -trimpath "$@"; }

# stamp_ok FILE CONTENT: true when FILE holds exactly CONTENT (build inputs unchanged).
stamp_ok() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }

# tool_module DIR NAME VERSION PKG...: a module in DIR that requires each PKG at VERSION as a
# tool (`go get -tool`), made again only when VERSION changed.
tool_module() {
  local dir=$1 name=$2 version=$3 t; shift 3
  mkdir -p "$dir"
  stamp_ok "$dir/.stamp" "$version" && [ -f "$dir/go.sum" ] && return 0
  t=$(now)
  rm -f "$dir/go.mod" "$dir/go.sum"
  (cd "$dir" && go mod init "pipelineinpod.local/cluster/$name" 2>/dev/null \
     && go get -tool "${@/%/@$version}" 2> "$dir/go-get.log") || { cat "$dir/go-get.log" >&2; die "go get failed"; }
  echo "$version" > "$dir/.stamp"
  log "$name tool module ready in $(since "$t")s"
}

# ---------------------------------------------------------------------------------------------- processes

# A PID file holds "PID STARTTIME" so a recycled PID is never mistaken for ours.
# (a zombie counts as gone: PID 1 here reaps orphans only every couple of seconds)
proc_starttime() { [ -r "/proc/$1/stat" ] && sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '$1 != "Z" {print $20}'; }
pidfile_of() { echo "$R/pids/$1.pid"; }
# is_running NAME [PIDFILE]
is_running() {
  local f=${2:-$(pidfile_of "$1")} pid st
  [ -f "$f" ] || return 1
  read -r pid st < "$f" || return 1
  [ -n "$pid" ] && [ "$(proc_starttime "$pid")" = "$st" ]
}
# start_daemon NAME PIDFILE LOGFILE CMD...: run CMD detached (own session, stdin /dev/null), record its PID.
start_daemon() {
  local name=$1 pf=$2 lf=$3; shift 3
  mkdir -p "$(dirname "$pf")" "$(dirname "$lf")"
  rm -f "$pf.tmp"
  # The inner shell writes its own PID then execs, so the PID file names the daemon itself even if setsid forks.
  # shellcheck disable=SC2016 # $$, $0 and $@ are the inner shell's
  setsid bash -c 'echo $$ > "$0"; exec "$@"' "$pf.tmp" "$@" < /dev/null >> "$lf" 2>&1 &
  local i pid=
  for i in $(seq 100); do [ -s "$pf.tmp" ] && pid=$(cat "$pf.tmp") && break; sleep 0.05; done
  [ -n "$pid" ] || die "$name did not start (log: $lf)"
  sleep 0.05
  echo "$pid $(proc_starttime "$pid")" > "$pf"; rm -f "$pf.tmp"
  log "started $name (pid $pid, log $lf)"
}
# stop_pidfile NAME PIDFILE [TIMEOUT_S]: SIGTERM, wait, SIGKILL. Only ever signals the PID recorded by us.
stop_pidfile() {
  local name=$1 f=$2 t=${3:-30} pid st i
  [ -f "$f" ] || return 0
  read -r pid st < "$f" || true
  if [ -n "${pid:-}" ] && [ "$(proc_starttime "$pid")" = "${st:-x}" ]; then
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq $((t * 10))); do [ "$(proc_starttime "$pid")" = "$st" ] || break; sleep 0.1; done
    if [ "$(proc_starttime "$pid")" = "$st" ]; then log "$name ($pid) ignored SIGTERM for ${t}s: SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; sleep 0.2; fi
    log "stopped $name ($pid)"
  fi
  rm -f "$f"
}
stop_daemon() { stop_pidfile "$1" "$(pidfile_of "$1")" "${2:-30}"; }
start_component() { local n=$1; shift; start_daemon "$n" "$(pidfile_of "$n")" "$R/logs/$n.log" "$@"; }

# wait_until TIMEOUT_S DESCRIPTION CMD...: poll CMD every 0.2 s.
wait_until() {
  local t=$1 what=$2 s; shift 2; s=$(now)
  local end=$(( $(date +%s) + t ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$end" ] || die "timed out after ${t}s waiting for $what"
    sleep 0.2
  done
  log "$what after $(since "$s")s"
}

# ---------------------------------------------------------------------------------------------- clients

kc() { "$BIN/kubectl" --kubeconfig "$KUBECONFIG_FILE" "$@"; }
ctr_k8s() { ctr -a "$CONTAINERD_SOCK" -n k8s.io "$@"; }
# api PATH [curl args]: raw apiserver request with the admin client certificate.
api() { local p=$1; shift; curl -sS --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" "$@" "https://127.0.0.1:$APISERVER_PORT$p"; }

tekton_src() { go_env; echo "$(go env GOMODCACHE)/github.com/tektoncd/pipeline@$TEKTON_VERSION"; }

# ---------------------------------------------------------------------------------------------- images
# Images are built offline with umoci as OCI layouts under $IMG/oci/<layout>, one or more tags per layout, and
# archived to $IMG/<layout>.oci.tar for `ctr images import`.

IMAGE_PATH_ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# oci_add LAYOUT TAG POPULATE_FN [umoci config args...]: add image TAG = one layer made by POPULATE_FN ROOTFS.
oci_add() {
  local layout=$1 tag=$2 fn=$3; shift 3
  local b; b=$(mktemp -d "$IMG/tmp.bundle.XXXXXX"); rmdir "$b"
  [ -d "$layout" ] || umoci init --layout "$layout"
  umoci new --image "$layout:$tag"
  umoci unpack --image "$layout:$tag" "$b" >/dev/null
  "$fn" "$b/rootfs"
  umoci repack --image "$layout:$tag" "$b"
  umoci config --image "$layout:$tag" --config.env "$IMAGE_PATH_ENV" "$@"
  rm -rf "$b"
}
# oci_retag LAYOUT FROM TO [umoci config args...]: image TO = FROM's layers with a different config.
oci_retag() { local layout=$1 from=$2 to=$3; shift 3; umoci config --image "$layout:$from" --tag "$to" "$@"; }
# oci_finish LAYOUT: garbage-collect and archive to $IMG/<layout>.oci.tar
oci_finish() { local layout=$1; umoci gc --layout "$layout"; tar -C "$layout" -cf "$IMG/$(basename "$layout").oci.tar.tmp" . && mv "$IMG/$(basename "$layout").oci.tar.tmp" "$IMG/$(basename "$layout").oci.tar"; }

# Root filesystem pieces.
rootfs_etc() { # ROOTFS: minimal passwd/group with root, nobody and nonroot (65532, as ko/distroless images have)
  mkdir -p "$1/etc" "$1/tmp" "$1/root" "$1/home/nonroot"; chmod 1777 "$1/tmp"; chown 65532:65532 "$1/home/nonroot"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$1/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' > "$1/etc/group"
}
rootfs_busybox() { # ROOTFS: Debian's static busybox with every applet linked where a distro puts it (sh, ash, /usr/bin/env ...)
  local r=$1 a
  rootfs_etc "$r"; mkdir -p "$r/bin" "$r/sbin" "$r/usr/bin" "$r/usr/sbin" "$r/var/run"
  cp /bin/busybox "$r/bin/busybox"
  for a in $(/bin/busybox --list-full); do [ -e "$r/$a" ] || ln -s /bin/busybox "$r/$a"; done
}
# rootfs_koapp NAME BINARY ROOTFS: ko-style image: the binary at /ko-app/NAME (the path Tekton hard-codes).
rootfs_koapp() {
  rootfs_etc "$3"; mkdir -p "$3/ko-app" "$3/var/run/ko"; cp "$2" "$3/ko-app/$1"; chmod 0755 "$3/ko-app/$1"
}
ko_config_args() { echo "--config.entrypoint /ko-app/$1 --config.env KO_DATA_PATH=/var/run/ko"; }

# import_layout LAYOUT_NAME "TAG TARGET" ...: make each TARGET name in containerd's k8s.io namespace point to the
# layout's image TAG. Imports the archive only when some TARGET is missing or has another digest.
# Pitfall 2: import with --base-name, tag with --force, never delete refs (the CRI plugin keeps stale refs).
import_layout() {
  local name=$1; shift
  local idx=$IMG/oci/$name/index.json archive=$IMG/$name.oci.tar pair tag target want have imported=
  { [ -f "$idx" ] && [ -f "$archive" ]; } || die "image layout $name not built (run hack/local-cluster/build-images.sh)"
  for pair in "$@"; do
    read -r tag target <<< "$pair"
    want=$(jq -r --arg t "$tag" '.manifests[]|select(.annotations["org.opencontainers.image.ref.name"]==$t)|.digest' "$idx")
    [ -n "$want" ] || die "layout $name has no tag $tag"
    have=$(ctr_k8s images ls "name==$target" 2>/dev/null | awk 'NR==2{print $3}')
    [ "$have" = "$want" ] && continue
    if [ -z "$imported" ]; then
      ctr_k8s images import --base-name "pipelineinpod.local/import/$name" "$archive" >/dev/null
      imported=1
    fi
    ctr_k8s images tag --force "pipelineinpod.local/import/$name:$tag" "$target" >/dev/null
    log "image $target -> $name:$tag (${want:7:12})"
  done
}
