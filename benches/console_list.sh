#!/usr/bin/env bash
# The console's job list on a table of a million jobs (issue 22): fills a SQLite database with
# N no-op jobs (`mcpq bench drain`, so every row went through the real enqueue, claim and
# completion), spreads them over 8 tools, 20 clients and the finished states (1 in 50
# failed, with an error text to search), then starts `mcpq ui` on it and times the first and
# the next page of several filtered lists with curl, RUNS times each (median printed).
# Stops only the process it started (by PID). With PGURL set, the same on PostgreSQL (in a
# schema of its own, mcpq_console_bench, dropped first).
#
#   bash benches/console_list.sh [BIN] [N] [RUNS]
#   PGURL=postgres://... bash benches/console_list.sh [BIN] [N] [RUNS]
set -u
BIN=${1:-target/release/mcpq}; N=${2:-1000000}; RUNS=${3:-5}
W=${TMPDIR:-/tmp}/mcpq-console-bench; rm -rf "$W"; mkdir -p "$W"
PORT=18797
cat > "$W/mcpq.toml" <<EOF
[console]
enabled = true
proxy_header = "X-Bench-Operator"
[operators.bench]
token_sha256 = "$(printf '%s' bench-token-0000000000000000000000000000 | sha256sum | cut -d' ' -f1)"
role = "read-only"
EOF
export MCPQ__DATABASE__PATH=$W/m.db MCPQ__SERVER__BENCH_TOOLS=true MCPQ__METRICS__LISTEN= \
       MCPQ__LIMITS__MAX_QUEUED_PER_CLIENT=0 RUST_LOG=warn
if [ -n "${PGURL:-}" ]; then
  export MCPQ__DATABASE__URL=$PGURL MCPQ__POSTGRES__SCHEMA=mcpq_console_bench
  psql -X -q "$PGURL" -c "DROP SCHEMA IF EXISTS mcpq_console_bench CASCADE" || exit 1
fi
echo "filling $N jobs" >&2
"$BIN" --config "$W/mcpq.toml" bench drain -n "$N" -w 2 >&2 || exit 1
if [ -n "${PGURL:-}" ]; then
  psql -X -q "$PGURL" <<'SQL'
SET search_path = mcpq_console_bench;
UPDATE jobs SET tool = 'tool_' || (seq % 8), client_id = 'client-' || lpad((seq % 20)::text, 3, '0');
UPDATE jobs SET state = 'failed', result = NULL,
  errors = jsonb_build_array(jsonb_build_object('attempt', 1, 'at', 0, 'error',
    'tool_failed: exit 3; stderr: connection refused by upstream ' || seq))
  WHERE seq % 50 = 0;
UPDATE jobs SET state = 'cancelled' WHERE seq % 97 = 0;
VACUUM ANALYZE jobs;
SQL
else
  sqlite3 "$W/m.db" <<'SQL'
UPDATE jobs SET tool = 'tool_' || (seq % 8), client_id = 'client-' || printf('%03d', seq % 20);
UPDATE jobs SET state = 'failed', result = NULL,
  errors = '[{"attempt":1,"at":0,"error":"tool_failed: exit 3; stderr: connection refused by upstream ' || seq || '"}]'
  WHERE seq % 50 = 0;
UPDATE jobs SET state = 'cancelled' WHERE seq % 97 = 0;
ANALYZE;
SQL
fi
"$BIN" --config "$W/mcpq.toml" ui --listen "127.0.0.1:$PORT" > /dev/null 2>> "$W/err" & pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null' EXIT
for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT/ui/login" && break; sleep 0.1; done

page() { # URL -> time in ms; the body goes to $W/page.html
  curl -s -o "$W/page.html" -w '%{time_total}' -H 'X-Bench-Operator: bench' "http://127.0.0.1:$PORT$1" |
    awk '{printf "%.1f", $1 * 1000}'
}
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

printf '%-44s %12s %12s\n' "list (filter)" "first ms" "next ms"
for q in "" "state=failed" "state=failed&tool=tool_2" "state=succeeded" "state=succeeded&tool=tool_3" \
         "client=client-007&state=succeeded" \
         "q=refused+by+upstream+4200" "q=connection+refused" "sort=updated" "tool=tool_5&sort=updated"; do
  firsts=""; nexts=""
  for _ in $(seq 1 "$RUNS"); do
    firsts="$firsts $(page "/ui/jobs?$q")"
    next=$(grep -o 'href="/ui/jobs?[^"]*after=[^"]*"' "$W/page.html" | head -1 | sed 's/^href="//; s/"$//; s/&amp;/\&/g')
    if [ -n "$next" ]; then nexts="$nexts $(page "$next")"; fi
  done
  printf '%-44s %12s %12s\n' "${q:-(none)}" "$(echo "$firsts" | median)" "$(echo "${nexts:- -}" | median)"
done

# The rare match followed to the end: "Search older jobs" until the list is exhausted.
path="/ui/jobs?q=refused+by+upstream+4200"; n=0; total=0; slowest=0; found=no
while [ -n "$path" ]; do
  ms=$(page "$path"); n=$((n + 1))
  total=$(awk -v a="$total" -v b="$ms" 'BEGIN {print a + b}')
  slowest=$(awk -v a="$slowest" -v b="$ms" 'BEGIN {print (b > a) ? b : a}')
  grep -q 'data-id=' "$W/page.html" && found=yes
  path=$(grep -o 'id="older" href="[^"]*"' "$W/page.html" | head -1 | sed 's/^id="older" href="//; s/"$//; s/&amp;/\&/g')
done
echo "rare text search followed through every job: $n requests, ${total} ms in all, slowest ${slowest} ms, match found: $found"

# The overview (counts by tool and state, the activity chart).
ovs=""; for _ in $(seq 1 "$RUNS"); do ovs="$ovs $(page "/ui")"; done
echo "overview /ui: $(echo "$ovs" | median) ms"
