#!/usr/bin/env bash
# Same-run A/B of two (or more) mcpq binaries, as used for the before/after figures in
# BENCHMARKS.md: RUNS rounds, each running every binary once, alternating, each on a fresh
# database, with every mcpq process stopped and the port checked free between runs.
# Prints each run's result and the daemon's CPU time for it (utime + stime).
#
#   cp target/release/mcpq /tmp/mcpq.before   # ... change, rebuild ...
#   bash benches/ab.sh enqueue 4 /tmp/mcpq.before target/release/mcpq
#   DUR=4 bash benches/ab.sh sync 3 A B        # KIND: enqueue | sync | e2e | noop (e2e with no-op jobs)
#
# A binary may be a wrapper script that sets MCPQ__... variables and execs mcpq, to A/B a setting.
set -u
KIND=$1; RUNS=$2; shift 2
W=${TMPDIR:-/tmp}/mcpq-ab; mkdir -p "$W"
PORT=18787
export MCPQ__DATABASE__PATH=$W/m.db MCPQ__SERVER__LISTEN=127.0.0.1:$PORT \
       MCPQ__SERVER__EMBEDDED_WORKERS=0 MCPQ__SERVER__BENCH_TOOLS=true MCPQ__LIMITS__MAX_QUEUED_PER_CLIENT=0 RUST_LOG=${RUST_LOG:-info}
stop() { pkill -f "mcpq.* (serve|worker)"; sleep 0.3; }
for _ in $(seq 1 "$RUNS"); do
  for bin in "$@"; do
    stop
    while (echo > /dev/tcp/127.0.0.1/$PORT) 2>/dev/null; do sleep 0.1; done
    rm -f "$W"/m.db*
    "$bin" serve > /dev/null 2>> "$W/err" &
    for _ in $(seq 1 100); do (echo > /dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.05; done
    sp=$(pgrep -n -f "mcpq.* serve"); c0=$(awk '{print $14+$15}' "/proc/$sp/stat")
    case $KIND in
      enqueue|sync)
        out=$("$bin" bench "$KIND" --url "http://127.0.0.1:$PORT" -c 32 -d "${DUR:-5}" | tail -1) ;;
      e2e|noop)
        wpids=()
        for _ in 1 2; do "$bin" worker > /dev/null 2>> "$W/err" & wpids+=($!); done
        sleep 0.3
        extra=(); [ "$KIND" = noop ] && extra=(--tool noop --args '{}')
        out=$("$bin" bench e2e --url "http://127.0.0.1:$PORT" -n 20000 -c 32 "${extra[@]}" | tail -1) ;;
      *) echo "unknown kind $KIND" >&2; exit 2 ;;
    esac
    c1=$(awk '{print $14+$15}' "/proc/$sp/stat")
    wcpu=""
    if [ "$KIND" = e2e ] || [ "$KIND" = noop ]; then
      wcpu="  workers_cpu=$(for p in "${wpids[@]}"; do cat "/proc/$p/stat"; done 2>/dev/null | awk '{s+=$14+$15} END {print s*10}')ms"
    fi
    echo "$bin: ${out#*: }  daemon_cpu=$(( (c1 - c0) * 10 ))ms$wcpu"
  done
done
stop
