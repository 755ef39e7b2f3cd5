#!/usr/bin/env bash
# A tiny hostPath volume provisioner for the local cluster, so that PVCs and Tekton volumeClaimTemplate workspaces
# bind whatever their size or count (the conformance corpus asks for up to 5Gi).
#
# Every Pending PVC whose storageClassName is the default class "local-hostpath" (or explicitly "") gets a PV
# pre-bound to it (claimRef with the PVC's uid), backed by a fresh directory under run/pvs/; the PV controller binds
# it at once. PVs it made that become Released (their PVC was deleted) are deleted with their directory, so nothing
# needs recycling between runs.
#
#   pvs.sh loop     run forever, reacting to PVC watch events (up.sh starts this as the "pv-provisioner" component)
#   pvs.sh once     one reconcile pass
#   pvs.sh status   list PVs and PVCs
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

PROVISIONER=pipelineinpod.local/hostpath
CLASS=local-hostpath
PV_DIR=$R/pvs

storage_class() {
  cat <<EOF
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: $CLASS
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: $PROVISIONER
reclaimPolicy: Delete
volumeBindingMode: Immediate
EOF
}

reconcile() {
  local pvcs pvs line uid dir
  pvcs=$(api /api/v1/persistentvolumeclaims -f) || return 1
  pvs=$(api /api/v1/persistentvolumes -f) || return 1
  # 1. provision: one PV per unbound claim of our class (or of class "") that no PV claims yet
  while IFS= read -r line; do
    [ -n "$line" ] || continue
    uid=$(jq -r .spec.claimRef.uid <<< "$line")
    dir=$PV_DIR/pvc-$uid
    mkdir -p "$dir" && chmod 0777 "$dir"
    if api /api/v1/persistentvolumes -f -X POST -H 'Content-Type: application/json' -d "$line" >/dev/null; then
      log "provisioned pvc-$uid for $(jq -r '.spec.claimRef|.namespace+"/"+.name' <<< "$line")"
    fi
  done < <(jq -c --argjson pvs "$pvs" --arg prov "$PROVISIONER" --arg class "$CLASS" --arg dir "$PV_DIR" '
      [$pvs.items[] | .spec.claimRef.uid // empty] as $claimed
      | .items[]
      | select(.status.phase == "Pending" and (.spec.volumeName // "") == "")
      | select((.spec.volumeMode // "Filesystem") == "Filesystem" and .spec.selector == null)
      | select((.spec.storageClassName // "") as $c | $c == $class or $c == "")
      | select(.metadata.uid as $u | $claimed | index($u) | not)
      | {apiVersion: "v1", kind: "PersistentVolume",
         metadata: {name: ("pvc-" + .metadata.uid),
                    annotations: {"pv.kubernetes.io/provisioned-by": $prov},
                    labels: {"pipelineinpod.local/hostpath": "true"}},
         spec: {capacity: {storage: .spec.resources.requests.storage},
                accessModes: .spec.accessModes,
                persistentVolumeReclaimPolicy: "Delete",
                storageClassName: (.spec.storageClassName // ""),
                volumeMode: "Filesystem",
                claimRef: {apiVersion: "v1", kind: "PersistentVolumeClaim",
                           namespace: .metadata.namespace, name: .metadata.name, uid: .metadata.uid},
                hostPath: {path: ($dir + "/pvc-" + .metadata.uid), type: "DirectoryOrCreate"}}}' <<< "$pvcs")
  # 2. delete: our PVs whose claim is gone
  while IFS= read -r line; do
    [ -n "$line" ] || continue
    api "/api/v1/persistentvolumes/$line" -X DELETE >/dev/null 2>&1 || true
    rm -rf "${PV_DIR:?}/$line"
    log "deleted released $line"
  done < <(jq -r --arg prov "$PROVISIONER" '.items[]
      | select(.metadata.annotations["pv.kubernetes.io/provisioned-by"] == $prov)
      | select(.status.phase == "Released" or .status.phase == "Failed") | .metadata.name' <<< "$pvs")
}

loop() {
  local cpid='' fd line rc
  trap '[ -n "$cpid" ] && kill "$cpid" 2>/dev/null; exit 0' TERM INT
  storage_class | kc apply -f - >/dev/null
  while true; do
    reconcile || true
    # Block on a PVC watch; reconcile after each burst of events, and every 10 s anyway (for Released PVs).
    exec {fd}< <(api "/api/v1/persistentvolumeclaims?watch=1&timeoutSeconds=600" -N 2>/dev/null)
    cpid=$!
    while true; do
      rc=0; read -r -t 10 -u "$fd" line || rc=$?
      if [ $rc -eq 0 ]; then
        while read -r -t 0.3 -u "$fd" line; do :; done   # drain the burst
        reconcile || true
      elif [ $rc -gt 128 ]; then
        reconcile || true                                 # timeout: periodic pass
      else
        break                                             # watch ended (timeout or API server restart)
      fi
    done
    exec {fd}<&-; kill "$cpid" 2>/dev/null || true; cpid=
    sleep 1
  done
}

case "${1:-once}" in
  loop) mkdir -p "$PV_DIR"; loop ;;
  once) mkdir -p "$PV_DIR"; storage_class | kc apply -f - >/dev/null; reconcile ;;
  status) kc get pv,pvc -A ;;
  storageclass) storage_class ;;
  *) echo "usage: $0 loop|once|status" >&2; exit 2 ;;
esac
