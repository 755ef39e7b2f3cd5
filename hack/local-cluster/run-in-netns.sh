#!/usr/bin/env bash
# Run a host process (a controller) inside its own network namespace that has only loopback, with the API server
# bridged in: 127.0.0.1:6443 inside the namespace reaches the host's 127.0.0.1:6443 through a UNIX socket (socat on
# both sides). Knative-based controllers (Tekton's, this project's) listen on *:8080, *:9090 and *:8008 with no flag
# to choose the address; in the namespace those listeners are invisible to the host, which keeps every host
# listener on 127.0.0.1. The admin kubeconfig ($PIP_CLUSTER_DIR/kubeconfig) works unchanged inside.
#
#   hack/local-cluster/run-in-netns.sh NAME -- CMD [ARGS...]
#
# Detached; PID files in $PIP_CLUSTER_DIR/run/netns/NAME/ (main.pid = CMD), output appended to $PIP_CLUSTER_DIR/run/logs/NAME.log.
# Does nothing if NAME is already running. Stop with stop-in-netns.sh NAME (down.sh stops them all).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

{ [ $# -ge 3 ] && [ "$2" = "--" ]; } || { sed -n '2,12p' "$0" >&2; exit 2; }
NAME=$1; shift 2
[[ $NAME =~ ^[A-Za-z0-9._-]+$ ]] || die "bad name: $NAME"
N=$R/netns/$NAME
LOGF=$R/logs/$NAME.log
mkdir -p "$N" "$R/logs"

if is_running "$NAME" "$N/main.pid"; then log "$NAME already running (pid $(cut -d' ' -f1 "$N/main.pid"), log $LOGF)"; exit 0; fi
"$LC_DIR/stop-in-netns.sh" "$NAME" 2>/dev/null || true   # leftovers of a previous instance
mkdir -p "$N"

SOCK=$N/apiserver.sock
start_daemon "$NAME-socat-host" "$N/socat-host.pid" "$R/logs/$NAME.socat.log" \
  socat "UNIX-LISTEN:$SOCK,fork,mode=600,unlink-early" "TCP:127.0.0.1:$APISERVER_PORT"
for _ in $(seq 50); do [ -S "$SOCK" ] && break; sleep 0.1; done
[ -S "$SOCK" ] || die "socat did not create $SOCK"

# Inside the new namespace: bring lo up, start the in-namespace socat (its PID recorded for stop-in-netns.sh),
# wait until it accepts, then exec the command (so the recorded PID is the command's).
# shellcheck disable=SC2016 # expanded by the inner shell, from the environment start_daemon passes
INNER='set -e
ip link set lo up
socat "TCP-LISTEN:$PORT,bind=127.0.0.1,reuseaddr,fork" "UNIX-CONNECT:$SOCK" </dev/null >>"$SOCATLOG" 2>&1 &
echo "$! $(sed "s/^.*) //" /proc/$!/stat | cut -d" " -f20)" > "$NSPID"
for i in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.05; done
exec "$@"'
echo "=== $(date -Is) run-in-netns $NAME: $*" >> "$LOGF"
PORT=$APISERVER_PORT SOCK=$SOCK SOCATLOG=$R/logs/$NAME.socat.log NSPID=$N/socat-netns.pid \
  start_daemon "$NAME" "$N/main.pid" "$LOGF" unshare --net -- bash -c "$INNER" bash "$@"
sleep 0.3
is_running "$NAME" "$N/main.pid" || { tail -20 "$LOGF" >&2; die "$NAME exited at once (log $LOGF)"; }
