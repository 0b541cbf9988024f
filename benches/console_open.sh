#!/usr/bin/env bash
# Does an open console slow the call path? (issue 22) Runs `mcpq bench sync` and `mcpq bench
# mcp` (c=32, DUR s) against one daemon with the console on, alternating rounds without and
# with an "open overview": the requests the overview page makes while open (its fragment every
# console.refresh_ms = 3 s, as console.js does), sent by curl rather than a browser so that a
# browser's own CPU on this 2-core box does not count as the daemon's cost. The daemon's
# store holds 100,000 finished jobs so the overview's counts and series have rows to read.
# Stops only what it started (by PID).
#
#   DUR=5 bash benches/console_open.sh [BIN] [RUNS]
set -u
BIN=${1:-target/release/mcpq}; RUNS=${2:-3}; DUR=${DUR:-5}
W=${TMPDIR:-/tmp}/mcpq-console-open; rm -rf "$W"; mkdir -p "$W"
PORT=18787; MPORT=18789
cat > "$W/mcpq.toml" <<EOF
[console]
enabled = true
proxy_header = "X-Bench-Operator"
[operators.bench]
token_sha256 = "$(printf '%s' bench-token-0000000000000000000000000000 | sha256sum | cut -d' ' -f1)"
role = "read-only"
EOF
export MCPQ__DATABASE__PATH=$W/m.db MCPQ__SERVER__LISTEN=127.0.0.1:$PORT \
       MCPQ__METRICS__LISTEN=127.0.0.1:$MPORT MCPQ__SERVER__EMBEDDED_WORKERS=0 \
       MCPQ__SERVER__BENCH_TOOLS=true MCPQ__LIMITS__MAX_QUEUED_PER_CLIENT=0 RUST_LOG=warn
"$BIN" --config "$W/mcpq.toml" bench drain -n 100000 -w 2 > /dev/null 2>&1 || exit 1
pids=()
stop() { [ ${#pids[@]} -gt 0 ] && { kill "${pids[@]}" 2>/dev/null; wait "${pids[@]}" 2>/dev/null; }; pids=(); }
trap stop EXIT
"$BIN" --config "$W/mcpq.toml" serve > /dev/null 2>> "$W/err" & pids+=($!)
for _ in $(seq 1 100); do (echo > /dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.05; done

poll_overview() { # what an open overview tab requests, until killed
  while :; do
    curl -s -o /dev/null -H 'X-Bench-Operator: bench' "http://127.0.0.1:$MPORT/ui/fragment/overview"
    sleep 3
  done
}
for kind in sync mcp; do
  for r in $(seq 1 "$RUNS"); do
    # ABBA: which goes first alternates, so an order effect (the nonce table grows over a
    # round) does not land on one side.
    order="no yes"; [ $((r % 2)) -eq 0 ] && order="yes no"
    for open in $order; do
      poller=""
      if [ $open = yes ]; then poll_overview & poller=$!; fi
      if [ $kind = sync ]; then
        out=$("$BIN" --config "$W/mcpq.toml" bench sync --url "http://127.0.0.1:$PORT" -c 32 -d "$DUR" 2>&1 | tail -1)
      else
        out=$("$BIN" bench mcp --endpoint "http://127.0.0.1:$PORT/mcp" -c 32 -d "$DUR" 2>&1 | tail -1)
      fi
      [ -n "$poller" ] && { kill "$poller"; wait "$poller" 2>/dev/null; }
      echo "$kind round $r overview-open=$open: $out"
    done
  done
done
