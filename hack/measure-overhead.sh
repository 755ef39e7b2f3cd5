#!/usr/bin/env bash
# Measure what the pod's own processes use while they wait: the numbers behind the
# overhead constants of pkg/assemble/resources.go.
#
#   hack/measure-overhead.sh [SECONDS]
#
# Builds cmd/entrypoint, lays out a two-task plan (b runs after a; a never starts, so
# b's entrypoints wait for ever), starts b's leader step, N follower steps and the
# reporter exactly as the pod's containers start them, lets them wait SECONDS (default
# 30), and prints each one's resident memory (anonymous and file-backed, from
# /proc/<pid>/status) and CPU (utime+stime from /proc/<pid>/stat) per second. No cluster
# is needed: a waiting entrypoint does the same work on a laptop as in a container.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-30}
followers=4
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$dir"' EXIT
go build -o "$dir/entrypoint" ./cmd/entrypoint
steps='"step-b-0"'
for i in $(seq 1 "$followers"); do steps="$steps,\"step-b-$i\""; done
cat >"$dir/plan.json" <<EOF
{"tasks":[{"key":"a","pipelineTask":"a","taskRun":"r-a","steps":["step-a-0"]},
 {"key":"b","pipelineTask":"b","taskRun":"r-b","runAfter":["a"],"steps":[$steps]}]}
EOF
ep=("$dir/entrypoint" -pip_plan "$dir/plan.json" -pip_state "$dir/state")
"${ep[@]}" -pip_mode init
common=(-pip_task b -pip_steps_dir "$dir/steps" -pip_results_dir "$dir/results" -pip_scripts_dir "$dir/scripts" -pip_cancel_file "$dir/cancel")
declare -A pids
"${ep[@]}" -pip_mode step "${common[@]}" -pip_step 0 -termination_path "$dir/term0" -entrypoint sleep -- 1000 >"$dir/step0.log" 2>&1 &
pids[leader]=$!
for i in $(seq 1 "$followers"); do
	"${ep[@]}" -pip_mode step "${common[@]}" -pip_step "$i" -termination_path "$dir/term$i" \
		-wait_file "$dir/steps/step-b-$((i - 1))/0" -post_file "$dir/steps/step-b-$i/0" -entrypoint sleep -- 1000 >"$dir/step$i.log" 2>&1 &
	pids[follower$i]=$!
done
"${ep[@]}" -pip_mode report >"$dir/report.log" 2>&1 &
pids[reporter]=$!
sleep 2 # past start-up
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
declare -A before
for n in "${!pids[@]}"; do before[$n]=$(ticks "${pids[$n]}"); done
sleep "$secs"
hz=$(getconf CLK_TCK)
printf '%-10s %10s %10s %12s\n' process RssAnon RssFile 'CPU (m)'
for n in $(printf '%s\n' "${!pids[@]}" | sort); do
	p=${pids[$n]}
	kill -0 "$p" 2>/dev/null || { echo "$n exited early: $(cat "$dir"/*.log)"; exit 1; }
	anon=$(awk '/^RssAnon/ {print $2 " kB"}' "/proc/$p/status")
	file=$(awk '/^RssFile/ {print $2 " kB"}' "/proc/$p/status")
	used=$(($(ticks "$p") - ${before[$n]}))
	printf '%-10s %10s %10s %12s\n' "$n" "$anon" "$file" "$(awk -v t="$used" -v hz="$hz" -v s="$secs" 'BEGIN {printf "%.1f", 1000*t/hz/s}')"
done
echo "binary: $(stat -c %s "$dir/entrypoint") bytes (copied into the pod's tekton-internal-bin emptyDir)"
