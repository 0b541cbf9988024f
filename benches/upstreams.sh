#!/usr/bin/env bash
# Upstream MCP servers behind mcpq (BENCHMARKS.md, "Upstreams"), each against its peer in
# the same run, runs interleaved, medians:
#
#  1. job: server-everything's `echo` (stdio, Node) as durable jobs run by 2 worker processes
#     through their warm sessions, vs a config command tool doing the same work (/bin/cat
#     echoes its arguments; one process spawned per job); target >= 0.8x.
#  2. pass: a sync pass-through to the rmcp peer (../shared/peers/mcp/rmcp) over streamable
#     HTTP, `mcpq bench mcp` at c=32 through mcpq's /mcp vs straight at the peer (2025-11-25,
#     nothing declared: the cheapest call the peer serves); target >= 0.5x. Also vs the
#     peer called as mcpq calls it (2026-07-28 with mcpq's per-request _meta), through an
#     upstream pinned to 2025-11-25 (the direct call's own wire), and at c=1 the added p50.
#
#  3. with CF_ENV (ContextForge's state/endpoint.env, ../shared/peers/contextforge: run its
#     start.sh first, which also starts the rmcp peer), the same pass-through calls through
#     ContextForge in front of the same peer, c=32 and c=4 for CF_D seconds (default 16: it
#     answers a few calls a second, so a run needs whole waves of 32); target: mcpq >= 5x.
#
#   bash benches/upstreams.sh              # RUNS=3 N=5000 P=32
#   CF_ENV=../shared/peers/contextforge/state/endpoint.env ONLY=pass bash benches/upstreams.sh
#
# Needs node and tests/fixtures/upstreams/node_modules (npm ci there), and the rmcp peer
# (built by its start.sh on first use). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
N=${N:-5000}
P=${P:-32}
D=${D:-5}
PORT=18787
PEER_PORT=18102
MCPQ=${MCPQ:-$PWD/target/release/mcpq}
PEER_DIR=${PEER_DIR:-$PWD/../shared/peers/mcp/rmcp}
EVERYTHING=$PWD/tests/fixtures/upstreams/node_modules/@modelcontextprotocol/server-everything/dist/index.js
NODE=$(command -v node) || { echo "needs node" >&2; exit 1; }
[ -f "$EVERYTHING" ] || { echo "run npm ci in tests/fixtures/upstreams first" >&2; exit 1; }
[ "$MCPQ" = "$PWD/target/release/mcpq" ] && cargo build --release --quiet
[ -x "$PEER_DIR/target/release/rmcp-peer" ] || cargo build --release --quiet --manifest-path "$PEER_DIR/Cargo.toml"

work=$(mktemp -d)
pids=()
peer_pid=
stop_all() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
cleanup() {
  stop_all
  [ -n "$peer_pid" ] && kill "$peer_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

wait_port() {
  for _ in $(seq 1 200); do
    (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listening on port $1" >&2
  [ -f "$work/err" ] && tail -5 "$work/err" >&2
  return 1
}
CF_URL=
if [ -n "${CF_ENV:-}" ]; then
  # shellcheck disable=SC1090
  . "$CF_ENV"   # CF_URL, CF_TOKEN, CF_TOOL_BATCH_SUM; its start.sh runs the peer
fi
for port in "$PORT" $([ -z "$CF_URL" ] && echo "$PEER_PORT"); do
  if (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is already in use; stop whatever listens there first" >&2
    exit 1
  fi
done

cat > "$work/mcpq.toml" <<EOF
[tools.cat]
description = "Echoes its arguments (a trivial command tool)"
command = ["/bin/cat"]

[upstreams.ev]
command = ["$NODE", "$EVERYTHING", "stdio"]
allow = ["echo"]

[upstreams.peer]
url = "http://127.0.0.1:$PEER_PORT/mcp"
mode = "sync"
concurrency = 256
pool = ${POOL:-1}

# The same peer, its sessions pinned to the 2025 revision (docs/UPSTREAMS.md "Which
# revision to pin"): the call mcpq makes is then the direct baseline's own wire.
[upstreams.peer25]
url = "http://127.0.0.1:$PEER_PORT/mcp"
revision = "2025-11-25"
mode = "sync"
concurrency = 256
pool = ${POOL:-1}
EOF

export MCPQ__DATABASE__PATH=$work/m.db MCPQ__SERVER__LISTEN=127.0.0.1:$PORT \
       MCPQ__METRICS__LISTEN="" MCPQ__SERVER__EMBEDDED_WORKERS=0 MCPQ__LIMITS__MAX_QUEUED_PER_CLIENT=0 \
       MCPQ__WORKER__MAX_PROCESSES=$((P / 2)) RUST_LOG=warn

if [ -z "$CF_URL" ]; then
  "$PEER_DIR/target/release/rmcp-peer" "127.0.0.1:$PEER_PORT" > /dev/null 2>&1 & peer_pid=$!
fi
wait_port "$PEER_PORT"

start_daemon() {
  rm -rf "$work"/m.db*
  "$MCPQ" --config "$work/mcpq.toml" serve > /dev/null 2>> "$work/err" & pids+=($!)
  wait_port "$PORT"
}

run_job() { # TOOL -> jobs/s, 2 worker processes
  start_daemon
  for _ in 1 2; do "$MCPQ" --config "$work/mcpq.toml" worker > /dev/null 2>> "$work/err" & pids+=($!); done
  sleep 1
  out=$("$MCPQ" --config "$work/mcpq.toml" bench e2e --url "http://127.0.0.1:$PORT" \
        -n "$N" -c "$P" --tool "$1" --args '{"message":"hi"}' --first-poll-after 0 --repoll 100 | tail -1)
  stop_all
  echo "$1: $out" >&2
  case $out in *" 0 failed"*) ;; *) echo "jobs failed: $out" >&2; exit 1 ;; esac
  echo "$out" | sed -E 's/.*: ([0-9]+) jobs\/s.*/\1/'
}

bench_mcp() { # ENDPOINT TOOL C [more options] -> the summary line
  "$MCPQ" --config "$work/mcpq.toml" bench mcp --endpoint "$1" --tool "$2" \
    --args '{"numbers":[1,2,3]}' -c "$3" -d "$D" "${@:4}" | tail -1
}
rate() { sed -E 's/.*: ([0-9]+) req\/s.*/\1/'; }
p50() { sed -E "s/.*p50=([0-9.]+) ?ms.*/\1/"; }

run_pass() { # -> "through direct through_p50 direct_p50 cf cf4 direct_2026 through_pinned_2025"
  start_daemon
  sleep 1
  local through direct d26 t1 d1 t25
  # Warm-up, not counted: the daemon's first seconds also start its other upstreams (the
  # Node server-everything process boots on these two cores).
  D=2 bench_mcp "http://127.0.0.1:$PORT/mcp" peer_batch_sum "$P" > /dev/null
  D=2 bench_mcp "http://127.0.0.1:$PORT/mcp" peer25_batch_sum "$P" > /dev/null
  through=$(bench_mcp "http://127.0.0.1:$PORT/mcp" peer_batch_sum "$P")
  t25=$(bench_mcp "http://127.0.0.1:$PORT/mcp" peer25_batch_sum "$P")
  direct=$(bench_mcp "http://127.0.0.1:$PEER_PORT/mcp" batch_sum "$P" --token "")
  # The same call straight at the peer as mcpq sends it (2026-07-28, its _meta): what the
  # peer itself spends on that revision is not mcpq's.
  d26=$(bench_mcp "http://127.0.0.1:$PEER_PORT/mcp" batch_sum "$P" --token "" --wire 2026-07-28)
  t1=$(bench_mcp "http://127.0.0.1:$PORT/mcp" peer_batch_sum 1)
  d1=$(bench_mcp "http://127.0.0.1:$PEER_PORT/mcp" batch_sum 1 --token "")
  local cf=0 cf4=0
  if [ -n "$CF_URL" ]; then
    local c32 c4
    c32=$(D=${CF_D:-16} bench_mcp "$CF_URL" "$CF_TOOL_BATCH_SUM" "$P" --token "$CF_TOKEN")
    c4=$(D=${CF_D:-16} bench_mcp "$CF_URL" "$CF_TOOL_BATCH_SUM" 4 --token "$CF_TOKEN")
    echo "contextforge c=$P: $c32 | contextforge c=4: $c4" >&2
    cf=$(echo "$c32" | rate_f); cf4=$(echo "$c4" | rate_f)
  fi
  stop_all
  echo "through: $through | through, pinned 2025-11-25: $t25 | direct: $direct | direct 2026-07-28: $d26 | c=1 through: $t1 | c=1 direct: $d1" >&2
  echo "$(echo "$through" | rate) $(echo "$direct" | rate) $(echo "$t1" | p50) $(echo "$d1" | p50) $cf $cf4 $(echo "$d26" | rate) $(echo "$t25" | rate)"
}
# Calls answered per second with a decimal (the summary rounds to whole calls).
rate_f() { sed -E 's/.* ok=([0-9]+) .*\(([0-9.]+)s\).*/\1 \2/' | awk '{printf "%.2f", $1 / $2}'; }

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

: > "$work/cat"; : > "$work/ev"; : > "$work/pass"
for r in $(seq 1 "$RUNS"); do
  echo "--- run $r of $RUNS" >&2
  if [ "${ONLY:-}" != pass ]; then
    run_job cat >> "$work/cat"
    run_job ev_echo >> "$work/ev"
  else
    echo 1 >> "$work/cat"; echo 0 >> "$work/ev"
  fi
  run_pass >> "$work/pass"
done
cat_=$(median < "$work/cat"); ev=$(median < "$work/ev")
through=$(cut -d' ' -f1 "$work/pass" | median); direct=$(cut -d' ' -f2 "$work/pass" | median)
tp50=$(cut -d' ' -f3 "$work/pass" | median); dp50=$(cut -d' ' -f4 "$work/pass" | median)
echo "runs: cat $(paste -sd/ "$work/cat")  ev_echo $(paste -sd/ "$work/ev")  pass $(paste -sd'|' "$work/pass")"
[ "${ONLY:-}" = pass ] || printf 'job path, stdio upstream (server-everything echo), %d jobs, 2 workers: %s jobs/s vs command tool /bin/cat %s jobs/s: %.2fx (target >= 0.8x)\n' \
  "$N" "$ev" "$cat_" "$(echo "$ev / $cat_" | bc -l)"
printf 'sync pass-through to rmcp-peer, c=%d: %s calls/s vs direct %s req/s: %.2fx (target >= 0.5x)\n' \
  "$P" "$through" "$direct" "$(echo "$through / $direct" | bc -l)"
d26=$(cut -d' ' -f7 "$work/pass" | median)
printf '  the same, vs the peer called on the revision mcpq calls it in (2026-07-28, same _meta): %s req/s: %.2fx\n' \
  "$d26" "$(echo "$through / $d26" | bc -l)"
t25=$(cut -d' ' -f8 "$work/pass" | median)
printf '  the same through an upstream pinned to 2025-11-25 (revision = "2025-11-25"), vs the same direct call: %s calls/s: %.2fx (target >= 0.5x)\n' \
  "$t25" "$(echo "$t25 / $direct" | bc -l)"
printf 'c=1 p50: through %s ms, direct %s ms: added %.3f ms (target <= 0.5 ms)\n' \
  "$tp50" "$dp50" "$(echo "$tp50 - $dp50" | bc -l)"
if [ -n "$CF_URL" ]; then
  cf=$(cut -d' ' -f5 "$work/pass" | median); cf4=$(cut -d' ' -f6 "$work/pass" | median)
  printf 'ContextForge in front of the same peer: c=%d %s req/s, c=4 %s req/s; mcpq in front at c=%d: %.0fx ContextForge (target >= 5x)\n' \
    "$P" "$cf" "$cf4" "$P" "$(echo "$through / ($cf + 0.000001)" | bc -l)"
fi
