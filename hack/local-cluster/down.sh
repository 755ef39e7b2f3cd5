#!/usr/bin/env bash
# Stop the local cluster and undo every host side effect. Safe to re-run, and safe after the processes were
# killed from outside (it then only cleans up).
#
#   hack/local-cluster/down.sh [--wipe]
#
# Stops, by recorded PID only: the run-in-netns processes (Tekton's controller, yours), pv-provisioner,
# scheduler, controller-manager, kubelet, every container (tasks of our containerd), containerd, the image registry,
# kube-apiserver, etcd.
# Then unmounts everything under run/, removes the pod bridge and its veths, the iptables chains the kubelet, the
# CNI plugin and up.sh added, the cgroups of the pods, the files kubelet/containerd/CNI write outside run/ at
# hard-coded paths, and restores the sysctls up.sh recorded. API objects (etcd data) are kept unless --wipe.
# --wipe also removes run/ (etcd data, containerd images and state, the registry's storage, PV contents, logs);
# never the build cache.
set -uo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
WIPE=0
case "${1:-}" in --wipe) WIPE=1 ;; "") ;; *) echo "usage: $0 [--wipe]" >&2; exit 2 ;; esac
T0=$(now)

# 1. Controllers in network namespaces, then the control-plane clients.
# (in parallel: each takes a second or two to exit)
for n in "$R"/netns/*/; do [ -d "$n" ] && { "$LC_DIR/stop-in-netns.sh" "$(basename "$n")" & }; done
for c in pv-provisioner kube-scheduler kube-controller-manager kubelet; do stop_daemon "$c" 20 & done
wait

# 2. Containers: kill every task of our containerd, and any process still left in the pods' cgroups.
if is_running containerd; then
  for t in $(ctr_k8s tasks ls -q 2>/dev/null); do ctr_k8s tasks kill -s SIGKILL "$t" >/dev/null 2>&1; done
  for _ in $(seq 50); do [ -z "$(ctr_k8s tasks ls -q 2>/dev/null | head -1)" ] && break
    for t in $(ctr_k8s tasks ls -q 2>/dev/null); do ctr_k8s tasks delete -f "$t" >/dev/null 2>&1; done; sleep 0.1; done
fi
stop_daemon containerd
stop_daemon registry
for h in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/*/k8s.io /sys/fs/cgroup/kubepods /sys/fs/cgroup/k8s.io; do
  [ -d "$h" ] || continue
  find "$h" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u | while read -r p; do kill -KILL "$p" 2>/dev/null; done
done
# Shims of our containerd (their command line names our socket) whose containerd died before reaping them.
for p in /proc/[0-9]*; do
  { c=$(tr '\0' ' ' < "$p/cmdline"); } 2>/dev/null || continue
  case $c in *containerd-shim*"$CONTAINERD_SOCK"*) kill -KILL "${p#/proc/}" 2>/dev/null ;; esac
done

# 3. API server and etcd last.
stop_daemon kube-apiserver 5   # its graceful shutdown takes 10 s; nothing needs it here
stop_daemon etcd

# 4. Mounts under run/ (overlay rootfs, pod volumes, netns bind mounts), deepest first.
for _ in 1 2 3; do
  mapfile -t ms < <(awk -v r="$R/" 'index($2, r) == 1 {print $2}' /proc/self/mounts | sort -r)
  [ ${#ms[@]} -eq 0 ] && break
  for m in "${ms[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; done
done

# 5. Network: veths on the pod bridge, the bridge, IPAM leases (no pod survives a down).
for v in $(ip -o link show master "$POD_BRIDGE" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do ip link delete "$v" 2>/dev/null; done
ip link show "$POD_BRIDGE" >/dev/null 2>&1 && ip link delete "$POD_BRIDGE"
rm -rf "$R/cni-ipam"

# 6. iptables/ip6tables: chains named KUBE-* (kubelet), CNI-* (CNI plugins), PIP-* (up.sh), and the rules jumping there.
for ipt in iptables ip6tables; do
  command -v $ipt >/dev/null || continue
  for t in filter nat mangle; do
    # (eval: iptables -S quotes comments, e.g. -m comment --comment "kubernetes firewall ...")
    $ipt -t $t -S 2>/dev/null | grep -E '^-A .* -j (KUBE|CNI|PIP)-' | grep -vE '^-A (KUBE|CNI|PIP)-' | while IFS= read -r rule; do
      eval "$ipt -t $t -D ${rule#-A }" 2>/dev/null
    done
    chains=$($ipt -t $t -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^(KUBE|CNI|PIP)-/ {print $2}')
    for ch in $chains; do $ipt -t $t -F "$ch" 2>/dev/null; done
    for ch in $chains; do $ipt -t $t -X "$ch" 2>/dev/null; done
  done
done

# 7. cgroups created for pods (cgroup v1 hierarchies, and v2 if present), deepest first.
for h in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/*/k8s.io /sys/fs/cgroup/kubepods /sys/fs/cgroup/k8s.io; do
  [ -d "$h" ] && find "$h" -depth -type d -exec rmdir {} \; 2>/dev/null
done

# 8. sysctls changed by the kubelet and the bridge plugin.
if [ -f "$R/sysctl.orig" ]; then
  while IFS='=' read -r k v; do [ -n "$k" ] && sysctl -qw "$k=$v" 2>/dev/null; done < "$R/sysctl.orig"
  rm -f "$R/sysctl.orig"
fi

# 9. Files written outside run/ at hard-coded paths.
rm -f /var/lib/cni/results/pipelineinpod-* /var/lib/cni/results/cni-loopback-*
rmdir /var/lib/cni/results /var/lib/cni 2>/dev/null
rm -f /var/lib/kubelet/device-plugins/kubelet.sock /var/lib/kubelet/device-plugins/kubelet_internal_checkpoint
rmdir /var/lib/kubelet/device-plugins /var/lib/kubelet/plugins_registry /var/lib/kubelet/plugins /var/lib/kubelet 2>/dev/null
find /var/log/containers -maxdepth 1 -type l -lname "$R/*" -delete 2>/dev/null
rmdir /var/log/containers 2>/dev/null
rmdir /usr/libexec/kubernetes/kubelet-plugins/volume/exec /usr/libexec/kubernetes/kubelet-plugins/volume \
  /usr/libexec/kubernetes/kubelet-plugins /usr/libexec/kubernetes 2>/dev/null
if ! pgrep -x containerd >/dev/null && ! pgrep -f containerd-shim >/dev/null; then
  rm -rf /run/containerd/s /run/containerd/fifo /run/containerd/runc/k8s.io
  rmdir /run/containerd/runc /run/containerd 2>/dev/null
fi

if [ $WIPE = 1 ]; then
  if awk -v r="$R/" 'index($2, r) == 1' /proc/self/mounts | grep -q .; then
    log "WARNING: mounts remain under $R; not wiping"; exit 1
  fi
  rm -rf "$R"
  log "run state wiped"
fi
log "down in $(since "$T0")s"
