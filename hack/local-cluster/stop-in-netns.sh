#!/usr/bin/env bash
# Stop a process started with run-in-netns.sh NAME, and its two socat bridges (by recorded PID only).
#   hack/local-cluster/stop-in-netns.sh NAME [TIMEOUT_S]
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
[ $# -ge 1 ] || { echo "usage: $0 NAME [TIMEOUT_S]" >&2; exit 2; }
N=$R/netns/$1
[ -d "$N" ] || exit 0
stop_pidfile "$1" "$N/main.pid" "${2:-30}"
stop_pidfile "$1-socat-netns" "$N/socat-netns.pid" 5
stop_pidfile "$1-socat-host" "$N/socat-host.pid" 5
rm -rf "$N"
