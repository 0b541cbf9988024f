#!/usr/bin/env bash
# MCP figures for BENCHMARKS.md, same run, alternating, RUNS rounds (default 3):
#  - tools/call batch_sum at c=1 and c=32: mcpq /mcp against the rmcp peer
#    (../shared/peers/mcp/rmcp, rmcp 3.11, stateless, JSON responses);
#  - durable task creation at c=32 (2026-07-28 tasks extension, the no-op job tool)
#    against durable enqueues of the same tool over /v1/call.
# Both servers at their default log level; no workers (jobs stay queued: the figure is
# the durable write), and no per-client queue cap (a 5 s run queues more than its default).
#
#   RUNS=3 DUR=5 bash benches/mcp.sh
set -u
RUNS=${RUNS:-3}; DUR=${DUR:-5}
repo=$(cd "$(dirname "$0")/.." && pwd)
MCPQ=${MCPQ:-$repo/target/release/mcpq}
PEER=${PEER:-$repo/../shared/peers/mcp/rmcp}
W=${TMPDIR:-/tmp}/mcpq-mcp-bench; mkdir -p "$W"
export MCPQ__DATABASE__PATH=$W/m.db MCPQ__SERVER__LISTEN=127.0.0.1:18787 MCPQ__METRICS__LISTEN= \
       MCPQ__SERVER__EMBEDDED_WORKERS=0 MCPQ__SERVER__BENCH_TOOLS=true MCPQ__LIMITS__MAX_QUEUED_PER_CLIENT=0
free() { while (echo > /dev/tcp/127.0.0.1/$1) 2>/dev/null; do sleep 0.1; done; }
up() { for _ in $(seq 1 300); do (echo > /dev/tcp/127.0.0.1/$1) 2>/dev/null && return; sleep 0.05; done; echo "nothing on $1" >&2; exit 1; }
start_mcpq() { free 18787; rm -f "$W"/m.db*; "$MCPQ" serve > /dev/null 2>> "$W/err" & mpid=$!; up 18787; }
start_peer() { free 18102; PORT=18102 bash "$PEER/start.sh" > /dev/null 2>> "$W/err" & ppid=$!; up 18102; }
stop() { kill "$@" 2> /dev/null; wait "$@" 2> /dev/null; }
for r in $(seq 1 "$RUNS"); do
  for c in 1 32; do
    start_peer
    "$MCPQ" bench mcp --endpoint http://127.0.0.1:18102/mcp --token "" -c $c -d "$DUR" | tail -1 | sed "s/^/run $r rmcp: /"
    stop $ppid
    start_mcpq
    "$MCPQ" bench mcp --endpoint http://127.0.0.1:18787/mcp -c $c -d "$DUR" | tail -1 | sed "s/^/run $r mcpq: /"
    stop $mpid
  done
  start_mcpq
  "$MCPQ" bench enqueue --url http://127.0.0.1:18787 --tool noop --args '{}' -c 32 -d "$DUR" | tail -1 | sed "s/^/run $r enqueue: /"
  stop $mpid
  start_mcpq
  "$MCPQ" bench mcp --endpoint http://127.0.0.1:18787/mcp --task --tool noop --args '{}' -c 32 -d "$DUR" | tail -1 | sed "s/^/run $r task: /"
  stop $mpid
done
