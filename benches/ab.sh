#!/usr/bin/env bash
# Same-run A/B of two (or more) mcpq binaries, as used for the before/after figures in
# BENCHMARKS.md: RUNS rounds, each running every binary once, alternating, each on a fresh
# database, every process it started stopped (by PID) and its port free between runs.
# Prints each run's result and, for the daemon kinds, the daemon's CPU time for it.
#
#   cp target/release/mcpq /tmp/mcpq.before   # ... change, rebuild ...
#   bash benches/ab.sh enqueue 3 /tmp/mcpq.before target/release/mcpq
#   DUR=4 bash benches/ab.sh sync 3 A B
#
# KIND:
#   sync | enqueue        closed loop on /v1/call, c=32, DUR s (batch_sum / the no-op job tool)
#   e2e | noop            20,000 jobs end to end with 2 `mcpq worker` processes
#                         (start_long_task, or the no-op tool)
#   mcp                   /mcp tools/call batch_sum, c=32, DUR s
#   held | held-pg        sequential held `/mcp` tools/call of the no-op job tool (c=1, DUR s)
#                         with one `mcpq worker` process, on SQLite or PostgreSQL (PGURL):
#                         the latency of a durable call from outside
#   drain                 `mcpq bench drain -n N -w 2` on SQLite (N default 100000)
#   drain-pg              the same on PostgreSQL (PGURL, default the CI test database;
#                         a schema of its own, dropped before each run)
#
# A binary may be a wrapper script that sets MCPQ__... variables and execs mcpq, to A/B a setting.
set -u
KIND=$1; RUNS=$2; shift 2
W=${TMPDIR:-/tmp}/mcpq-ab; mkdir -p "$W"
PORT=18787
N=${N:-100000}
PGURL=${PGURL:-postgres://mcpq_ci:mcpq_ci@127.0.0.1:5432/mcpq_ci?sslmode=disable}
export MCPQ__DATABASE__PATH=$W/m.db MCPQ__SERVER__LISTEN=127.0.0.1:$PORT MCPQ__METRICS__LISTEN= \
       MCPQ__SERVER__EMBEDDED_WORKERS=0 MCPQ__SERVER__BENCH_TOOLS=true MCPQ__LIMITS__MAX_QUEUED_PER_CLIENT=0 RUST_LOG=${RUST_LOG:-info}
pids=()
stop() { # only what this script started
  [ ${#pids[@]} -gt 0 ] && { kill "${pids[@]}" 2>/dev/null; wait "${pids[@]}" 2>/dev/null; }
  pids=()
  while (echo > /dev/tcp/127.0.0.1/$PORT) 2>/dev/null; do sleep 0.1; done
}
trap stop EXIT
serve() {
  "$1" serve > /dev/null 2>> "$W/err" & sp=$!; pids+=("$sp")
  for _ in $(seq 1 200); do (echo > /dev/tcp/127.0.0.1/$PORT) 2>/dev/null && return; sleep 0.05; done
  echo "daemon did not start; see $W/err" >&2; exit 1
}
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
for _ in $(seq 1 "$RUNS"); do
  for bin in "$@"; do
    stop
    rm -rf "$W"/m.db*
    sync
    extra=""
    case $KIND in
      enqueue|sync|mcp)
        serve "$bin"; c0=$(cpu "$sp")
        if [ "$KIND" = mcp ]; then
          out=$("$bin" bench mcp --endpoint "http://127.0.0.1:$PORT/mcp" -c 32 -d "${DUR:-5}" | tail -1)
        else
          out=$("$bin" bench "$KIND" --url "http://127.0.0.1:$PORT" -c 32 -d "${DUR:-5}" | tail -1)
        fi
        extra="  daemon_cpu=$(( ($(cpu "$sp") - c0) * 10 ))ms" ;;
      e2e|noop)
        serve "$bin"; c0=$(cpu "$sp")
        wp=()
        for _ in 1 2; do "$bin" worker > /dev/null 2>> "$W/err" & wp+=($!); pids+=($!); done
        sleep 0.3
        args=(); [ "$KIND" = noop ] && args=(--tool noop --args '{}')
        out=$("$bin" bench e2e --url "http://127.0.0.1:$PORT" -n 20000 -c 32 "${args[@]}" | tail -1)
        wcpu=$(for p in "${wp[@]}"; do cat "/proc/$p/stat"; done 2>/dev/null | awk '{s+=$14+$15} END {print s*10}')
        extra="  daemon_cpu=$(( ($(cpu "$sp") - c0) * 10 ))ms workers_cpu=${wcpu}ms" ;;
      held|held-pg)
        if [ "$KIND" = held-pg ]; then
          psql -X -q -At "$PGURL" -c "DROP SCHEMA IF EXISTS mcpq_ab CASCADE" > /dev/null
          export MCPQ__DATABASE__URL=$PGURL MCPQ__POSTGRES__SCHEMA=mcpq_ab
        fi
        serve "$bin"
        "$bin" worker > /dev/null 2>> "$W/err" & pids+=($!)
        sleep 0.3
        out=$("$bin" bench mcp --endpoint "http://127.0.0.1:$PORT/mcp" -c 1 -d "${DUR:-5}" --tool noop --args '{}' | tail -1)
        unset MCPQ__DATABASE__URL MCPQ__POSTGRES__SCHEMA ;;
      drain)
        out=$(MCPQ__DATABASE__URL= "$bin" bench drain -n "$N" -w 2 2>> "$W/err" | grep '^drain' | tail -1) ;;
      drain-pg)
        psql -X -q -At "$PGURL" -c "DROP SCHEMA IF EXISTS mcpq_ab CASCADE" -c CHECKPOINT > /dev/null
        out=$(MCPQ__DATABASE__URL=$PGURL MCPQ__POSTGRES__SCHEMA=mcpq_ab "$bin" bench drain -n "$N" -w 2 2>> "$W/err" | grep '^drain' | tail -1) ;;
      *) echo "unknown kind $KIND" >&2; exit 2 ;;
    esac
    echo "$bin: ${out#*: }$extra"
  done
done
