#!/usr/bin/env bash
# Config tools end to end, each against its bare cost measured in the same run
# (BENCHMARKS.md, "Config tools"):
#
#  1. command: a trivial command tool (/bin/cat, which echoes its args) as durable jobs run
#     by 2 worker processes, vs spawning the same /bin/cat with the same parallelism from a
#     plain loop (xargs -P); target >= 0.8x.
#  2. http: an HTTP tool POSTing to a local static endpoint (nginx), vs wrk against that
#     same endpoint directly; target >= 0.5x.
#
#   bash benches/tools.sh                  # RUNS=3 N=5000 P=32 REPOLL=100 (ms)
#   RUNS=5 N=10000 bash benches/tools.sh
#
# Needs nginx and wrk (Debian: apt-get install nginx-light wrk). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
N=${N:-5000}
P=${P:-32}
# A client of a tool that takes milliseconds to seconds polls at a modest interval
# (PROTOCOL.md); 20 ms, the e2e default, spends the daemon's CPU on polls of a backlog.
REPOLL=${REPOLL:-100}
PORT=18787
NGINX_PORT=18088
MCPQ=${MCPQ:-$PWD/target/release/mcpq}   # MCPQ=/path/to/another/build to A/B
command -v nginx >/dev/null || { echo "needs nginx (apt-get install nginx-light)" >&2; exit 1; }
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }
[ "$MCPQ" = "$PWD/target/release/mcpq" ] && cargo build --release --quiet

work=$(mktemp -d)
pids=()
stop_all() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
cleanup() {
  stop_all
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

wait_port() {
  for _ in $(seq 1 200); do
    (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listening on port $1" >&2
  return 1
}

# A process left over from another run would be measured instead of ours: refuse.
for port in "$PORT" "$NGINX_PORT"; do
  if (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is already in use; stop whatever listens there first" >&2
    exit 1
  fi
done

# --- the static endpoint --------------------------------------------------------------
mkdir -p "$work/nginx"
cat > "$work/nginx.conf" <<EOF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx;
  proxy_temp_path $work/nginx;
  fastcgi_temp_path $work/nginx;
  uwsgi_temp_path $work/nginx;
  scgi_temp_path $work/nginx;
  server {
    listen 127.0.0.1:$NGINX_PORT;
    keepalive_requests 1000000;
    location / { default_type application/json; return 200 '{"ok":true}'; }
  }
}
EOF
nginx -c "$work/nginx.conf"
wait_port "$NGINX_PORT"

cat > "$work/tools.toml" <<EOF
[tools.cat]
description = "Echoes its arguments (a trivial command tool)"
command = ["/bin/cat"]

[tools.static]
description = "POSTs its arguments to a static endpoint"
url = "http://127.0.0.1:$NGINX_PORT/static"

[tools.static_sync]
description = "The same, answered at once"
mode = "sync"
url = "http://127.0.0.1:$NGINX_PORT/static"
concurrency = 64
EOF
echo '{"x":1}' > "$work/args.json"

# The same parallelism as the spawn loop: P tool processes across the 2 workers.
export MCPQ__DATABASE__PATH=$work/m.db MCPQ__SERVER__LISTEN=127.0.0.1:$PORT \
       MCPQ__SERVER__EMBEDDED_WORKERS=0 MCPQ__SERVER__BENCH_TOOLS=true MCPQ__LIMITS__MAX_QUEUED_PER_CLIENT=0 \
       MCPQ__WORKER__MAX_PROCESSES=$((P / 2)) RUST_LOG=warn

run_mcpq() { # TOOL [ARGS] -> prints jobs/s
  rm -f "$work"/m.db*
  "$MCPQ" --config "$work/tools.toml" serve > /dev/null 2>> "$work/err" & pids+=($!)
  wait_port "$PORT"
  for _ in 1 2; do "$MCPQ" --config "$work/tools.toml" worker > /dev/null 2>> "$work/err" & pids+=($!); done
  sleep 0.3
  out=$("$MCPQ" --config "$work/tools.toml" bench e2e --url "http://127.0.0.1:$PORT" \
        -n "$N" -c "$P" --tool "$1" --args "${2:-{\"x\":1\}}" --first-poll-after 0 --repoll "$REPOLL" | tail -1)
  stop_all
  echo "$out" >&2
  case $out in *" 0 failed"*) ;; *) echo "jobs failed: $out" >&2; exit 1 ;; esac
  echo "$out" | sed -E 's/.*: ([0-9]+) jobs\/s.*/\1/'
}

run_sync() { # -> sync calls/s of the HTTP tool in mode = "sync"
  rm -f "$work"/m.db*
  "$MCPQ" --config "$work/tools.toml" serve > /dev/null 2>> "$work/err" & pids+=($!)
  wait_port "$PORT"
  out=$("$MCPQ" --config "$work/tools.toml" bench sync --url "http://127.0.0.1:$PORT" \
        -c "$P" -d 5 --tool static_sync --args '{"x":1}' | tail -1)
  stop_all
  echo "$out" >&2
  echo "$out" | sed -E 's/.*: ([0-9]+) req\/s.*/\1/'
}

run_spawn() { # -> processes/s spawning /bin/cat with P at once
  local t0 t1
  t0=$(date +%s.%N)
  seq "$N" | sed "s|.*|$work/args.json|" | xargs -P "$P" -n 1 /bin/cat > /dev/null
  t1=$(date +%s.%N)
  echo "$N / ($t1 - $t0)" | bc -l | xargs printf '%.0f\n'
}

run_wrk() { # -> requests/s straight to the endpoint, P connections, 1 thread
  wrk -t 1 -c "$P" -d 5 -s /dev/stdin "http://127.0.0.1:$NGINX_PORT/static" <<'EOF' |
wrk.method = "POST"
wrk.body = '{"x":1}'
wrk.headers["Content-Type"] = "application/json"
EOF
    awk '/Requests\/sec/ {printf "%.0f\n", $2}'
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

: > "$work/cat"; : > "$work/spawn"; : > "$work/static"; : > "$work/wrk"; : > "$work/noop"; : > "$work/sync"
for r in $(seq 1 "$RUNS"); do
  echo "--- run $r of $RUNS" >&2
  run_spawn >> "$work/spawn"
  run_mcpq cat >> "$work/cat"
  run_wrk >> "$work/wrk"
  run_mcpq static >> "$work/static"
  run_mcpq noop '{}' >> "$work/noop"
  run_sync >> "$work/sync"
done
spawn=$(median < "$work/spawn"); cat_=$(median < "$work/cat")
wrk_=$(median < "$work/wrk"); static=$(median < "$work/static"); noop=$(median < "$work/noop"); sync=$(median < "$work/sync")
echo "runs: spawn $(paste -sd/ "$work/spawn")  cat $(paste -sd/ "$work/cat")  wrk $(paste -sd/ "$work/wrk")  static $(paste -sd/ "$work/static")  noop $(paste -sd/ "$work/noop")  sync $(paste -sd/ "$work/sync")"
printf 'command tool /bin/cat, %d jobs, 2 workers: %s jobs/s vs xargs -P %d spawn %s/s: %.2fx (target >= 0.8x)\n' \
  "$N" "$cat_" "$P" "$spawn" "$(echo "$cat_ / $spawn" | bc -l)"
printf 'http tool vs nginx static, %d jobs, 2 workers: %s jobs/s vs wrk -c %d %s req/s: %.2fx (target >= 0.5x)\n' \
  "$N" "$static" "$P" "$wrk_" "$(echo "$static / $wrk_" | bc -l)"
printf 'http tool in mode = "sync", c=%d: %s calls/s vs wrk %s req/s: %.2fx\n' \
  "$P" "$sync" "$wrk_" "$(echo "$sync / $wrk_" | bc -l)"
printf 'the queue itself (built-in no-op job tool), %d jobs, 2 workers: %s jobs/s; http tool %.2fx of it\n' \
  "$N" "$noop" "$(echo "$static / $noop" | bc -l)"
