#!/usr/bin/env bash
# Run Tekton's remote resolvers (cmd/resolvers: the cluster, bundles and git resolvers) in the local cluster as
# Tekton's release installs them: the pinned module's config/resolvers files, the image built by ko from that module
# into the local registry. `resolver:` refs in Pipelines, Tasks and runs then resolve through ResolutionRequests as on
# a real cluster. Idempotent; called by tekton-up.sh.
#
# - Base image: Tekton's .ko.yaml builds the resolvers onto ghcr.io/tektoncd/plumbing/tini-git, because the git
#   resolver runs the `git` binary (pkg/resolution/resolver/git/repository.go) and the Deployment's command is
#   /sbin/tini. The stand-in here is Debian bookworm minbase with git, tini and ca-certificates (debootstrap once,
#   cached in $IMG/rootfs), served by the registry as ghcr.io/tektoncd/plumbing/tini-git:local.
# - Only the resolvers that work offline are enabled in resolvers-feature-flags: cluster, bundles, git. The hub
#   resolver (Tekton Hub / Artifact Hub) and the http resolver fetch from the internet: disabled.
# - Pods reach the registry at $POD_GATEWAY:5000 (the bridge's address: a DNAT to the loopback-only registry, as the
#   `kubernetes` Service's; see ensure_pod_registry), so a bundle reference for the bundles resolver names
#   10.244.0.1:5000/<repo> (go-containerregistry speaks plain http to private addresses).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
kc get --raw /readyz >/dev/null 2>&1 || die "the cluster is not up (run hack/local-cluster/up.sh)"

CFG=$(tekton_src)/config/resolvers
[ -f "$CFG/resolvers-deployment.yaml" ] || die "Tekton's resolvers config not found at $CFG"
NS=tekton-pipelines-resolvers
DEPLOY=deployment/tekton-pipelines-remote-resolvers
POD_REGISTRY=$POD_GATEWAY:${REGISTRY##*:}
BASE_NAME=ghcr.io/tektoncd/plumbing/tini-git:local   # the registry's repository <host>/<path>, as registry.sh serves
stamp=$R/tekton-resolvers.stamp

# ensure_pod_registry: pods reach the registry (127.0.0.1 only) at $POD_REGISTRY. There is no kube-proxy, so, as for
# the `kubernetes` Service, a DNAT in up.sh's PIP-SERVICES chain sends it to the loopback address (route_localnet on
# the bridge; PIP-INPUT lets DNATed packets through). up.sh writes that rule; this adds it to a cluster started by an
# up.sh without it (the chain is rebuilt by every up.sh, removed by down.sh).
ensure_pod_registry() {
  local rule=(-d "$POD_GATEWAY/32" -p tcp --dport "${REGISTRY##*:}" -j DNAT --to-destination "$REGISTRY")
  iptables -t nat -C PIP-SERVICES "${rule[@]}" 2>/dev/null || iptables -t nat -A PIP-SERVICES "${rule[@]}"
}
ensure_pod_registry

# The probe: a ResolutionRequest for the cluster resolver gets an answer (here a failure: the Task does not exist),
# which shows that the resolvers run, watch ResolutionRequests and may write their status.
answered() {
  local name=resolvers-probe
  kc -n $NS get resolutionrequest $name >/dev/null 2>&1 || kc create -f - >/dev/null <<YAML || return 1
apiVersion: resolution.tekton.dev/v1beta1
kind: ResolutionRequest
metadata:
  name: $name
  namespace: $NS
  labels: {resolution.tekton.dev/type: cluster}
spec:
  params:
  - {name: kind, value: task}
  - {name: name, value: no-such-task}
  - {name: namespace, value: $NS}
YAML
  [ -n "$(kc -n $NS get resolutionrequest $name -o jsonpath='{.status.conditions[?(@.type=="Succeeded")].reason}')" ] &&
    [ "$(kc -n $NS get resolutionrequest $name -o jsonpath='{.status.conditions[?(@.type=="Succeeded")].status}')" != Unknown ] &&
    kc -n $NS delete resolutionrequest $name --wait=false >/dev/null
}

# --- base image -----------------------------------------------------------------------------------------------------
DEBIAN_SUITE=${DEBIAN_SUITE:-bookworm}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
GIT_PACKAGES=git,tini,ca-certificates
GIT_TAR=$IMG/rootfs/debian-$DEBIAN_SUITE-minbase-git.tar
build_git_rootfs() {
  [ -s "$GIT_TAR" ] && return 0
  local t d; t=$(now); mkdir -p "$IMG/rootfs"; d=$(mktemp -d "$IMG/rootfs/debootstrap-git.XXXXXX")
  log "debootstrap --variant=minbase --include=$GIT_PACKAGES $DEBIAN_SUITE (once; cached in $GIT_TAR)"
  if ! debootstrap --variant=minbase --include=$GIT_PACKAGES --arch=amd64 "$DEBIAN_SUITE" "$d" "$DEBIAN_MIRROR" \
      > "$IMG/rootfs/debootstrap-git.log" 2>&1; then
    tail -20 "$IMG/rootfs/debootstrap-git.log" >&2; rm -rf "$d"; die "debootstrap failed (log: $IMG/rootfs/debootstrap-git.log)"
  fi
  rm -rf "$d"/var/cache/apt/* "$d"/var/lib/apt/lists/* "$d"/usr/share/doc/* "$d"/usr/share/man/* \
         "$d"/usr/share/info/* "$d"/usr/share/locale/* "$d"/var/log/* "${d:?}"/dev/* "$d"/debootstrap
  # Tekton's Deployment runs /sbin/tini (Alpine's path, where tini-git has it); Debian installs /usr/bin/tini.
  [ -e "$d/sbin/tini" ] || ln -s /usr/bin/tini "$d/usr/sbin/tini"
  # ko's images run as nonroot (65532), as the Deployment's securityContext does.
  printf 'nonroot:x:65532:65532:nonroot:/home/nonroot:/usr/sbin/nologin\n' >> "$d/etc/passwd"
  printf 'nonroot:x:65532:\n' >> "$d/etc/group"
  mkdir -p "$d/home/nonroot"; chown 65532:65532 "$d/home/nonroot"
  tar -C "$d" --numeric-owner -cf "$GIT_TAR.tmp" . && mv "$GIT_TAR.tmp" "$GIT_TAR"
  rm -rf "$d"
  log "Debian rootfs with git ready in $(since "$t")s ($(du -h "$GIT_TAR" | cut -f1))"
}
pop_git() { tar -C "$1" --numeric-owner -xpf "$GIT_TAR"; }
# build_base: the base image in the registry (layout $IMG/oci/tini-git); prints its digest.
build_base() {
  local layout=$IMG/oci/tini-git sum want
  build_git_rootfs >&2
  sum="tini-git=$(sha256sum < "$GIT_TAR" | cut -c1-16)"
  if ! { [ -f "$layout/index.json" ] && stamp_ok "$IMG/oci/tini-git.stamp" "$sum"; }; then
    rm -rf "$layout"
    oci_add "$layout" tini-git pop_git --config.user 65532 --config.entrypoint /usr/bin/tini >&2
    umoci gc --layout "$layout" >&2
    echo "$sum" > "$IMG/oci/tini-git.stamp"
    log "image layout tini-git built"
  fi
  want=$(jq -r '.manifests[]|select(.annotations["org.opencontainers.image.ref.name"]=="tini-git")|.digest' "$layout/index.json")
  if [ "$(skopeo inspect --tls-verify=false --format '{{.Digest}}' "docker://$REGISTRY/$BASE_NAME" 2>/dev/null)" != "$want" ]; then
    skopeo copy --quiet --dest-tls-verify=false "oci:$layout:tini-git" "docker://$REGISTRY/$BASE_NAME" >/dev/null
    log "registry: $BASE_NAME pushed"
  fi
  echo "$want"
}

base_digest=$(build_base)
want_stamp="$TEKTON_VERSION $base_digest"
ready=$(kc -n $NS get $DEPLOY -o jsonpath='{.status.readyReplicas}' 2>/dev/null || true)
if [ "$(cat "$stamp" 2>/dev/null)" = "$want_stamp" ] && [ "$ready" = 1 ]; then
  log "Tekton resolvers already running"
  exit 0
fi

# shellcheck source=env.sh
source "$LC_DIR/env.sh"
# As for the webhook: ko builds in a tool module that pins Tekton $TEKTON_VERSION (this project does not link
# cmd/resolvers and its dependencies).
go_env
W=$SRC/tekton-resolvers
tool_module "$W" tekton-resolvers "$TEKTON_VERSION" github.com/tektoncd/pipeline/cmd/resolvers

# Tekton's files, with the hub and http resolvers disabled (the substitution is checked: a renamed key must not
# silently leave them on).
FLAGS=$R/tekton-resolvers-feature-flags.yaml
sed -e 's/^\(  enable-hub-resolver:\) "true"/\1 "false"  # fetches from the Tekton Hub \/ Artifact Hub: no internet here/' \
    -e 's/^\(  enable-http-resolver:\) "true"/\1 "false"  # fetches any URL: no internet here/' \
    "$CFG/config-feature-flags.yaml" > "$FLAGS"
for k in hub http; do grep -q "^  enable-$k-resolver: \"false\"" "$FLAGS" || die "$CFG/config-feature-flags.yaml: enable-$k-resolver not found"; done
for k in bundles git cluster; do grep -q "^  enable-$k-resolver: \"true\"" "$FLAGS" || die "$CFG/config-feature-flags.yaml: enable-$k-resolver is not \"true\""; done

# One object per file. ConfigMaps as tekton-up.sh treats Tekton's: created when missing, so local edits (say, the
# cluster resolver's allowed-namespaces) survive a restart; the rest resolved by ko and applied.
cms=() objs=()
for f in "$CFG"/*.yaml; do
  [ "$(basename "$f")" = config-feature-flags.yaml ] && f=$FLAGS
  if grep -q '^kind: ConfigMap$' "$f"; then cms+=("$f"); else objs+=(-f "$f"); fi
done
t=$(now)
(cd "$W" && KO_DOCKER_REPO=$PIP_REGISTRY/tektoncd KO_DEFAULTBASEIMAGE=$PIP_REGISTRY/$BASE_NAME \
  KO_DEFAULTPLATFORMS=linux/amd64 "$BIN/ko" resolve "${objs[@]}") > "$R/tekton-resolvers.yaml" 2> "$R/logs/tekton-resolvers-ko.log" ||
  { tail -20 "$R/logs/tekton-resolvers-ko.log" >&2; die "ko resolve of Tekton's resolvers failed"; }
log "Tekton resolvers image built and pushed in $(since "$t")s"
kc apply -f "$CFG/100-namespace.yaml" >/dev/null
for f in "${cms[@]}"; do
  out=$(kc create -f "$f" --save-config 2>&1) || grep -q AlreadyExists <<< "$out" || die "$f: $out"
done
kc apply -f "$R/tekton-resolvers.yaml" >/dev/null
kc -n $NS rollout status $DEPLOY --timeout=300s >&2
wait_until 120 "Tekton resolvers answering a ResolutionRequest" answered
echo "$want_stamp" > "$stamp"
log "Tekton resolvers running (cluster, bundles, git; pods reach the registry at $POD_REGISTRY)"
