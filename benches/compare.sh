#!/usr/bin/env bash
# Reproduces every figure in BENCHMARKS.md: mcpq and the seed (FastAPI + uvicorn,
# ../shared/reference/seed_http) driven by the same load generator (`mcpq bench`)
# in the same run, RUNS times each, alternating, reporting medians and ratios.
#
#   bash benches/compare.sh            # RUNS=3 by default
#   RUNS=5 DURATION=10 bash benches/compare.sh
#
# Everything listens on loopback only. The seed needs a venv with its pinned
# requirements; it is created on first use at $SEED_VENV.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
DURATION=${DURATION:-10}
SEED_DIR=${SEED_DIR:-../shared/reference/seed_http}
SEED_VENV=${SEED_VENV:-${TMPDIR:-/tmp}/mcpq-seed-venv}
MCPQ=$PWD/target/release/mcpq
MCPQ_PORT=18787
SEED_PORT=18080
SEED_ARGS=(--url "http://127.0.0.1:$SEED_PORT" --client-secret client_secret --server-secret server_secret)
MCPQ_ARGS=(--url "http://127.0.0.1:$MCPQ_PORT")

cargo build --release --quiet
if [ ! -x "$SEED_VENV/bin/uvicorn" ]; then
  python3 -m venv "$SEED_VENV"
  "$SEED_VENV/bin/pip" install -q -r "$SEED_DIR/requirements.txt"
fi

work=$(mktemp -d)
log=$work/results.log
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# A process left over from another run would be measured instead of ours: refuse.
ensure_free() {
  if (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
    echo "port $1 is already in use; stop whatever listens there first" >&2
    exit 1
  fi
}

wait_port() {
  for _ in $(seq 1 200); do
    (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listening on port $1" >&2
  return 1
}

stop_all() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}

# mcpq with a fresh database, no embedded workers, plus $1 worker processes.
start_mcpq() {
  local workers=$1
  rm -f "$work"/mcpq.db*
  ensure_free "$MCPQ_PORT"
  export MCPQ__DATABASE__PATH=$work/mcpq.db MCPQ__SERVER__LISTEN=127.0.0.1:$MCPQ_PORT \
         MCPQ__SERVER__EMBEDDED_WORKERS=0 MCPQ__SERVER__BENCH_TOOLS=true MCPQ__LIMITS__MAX_QUEUED_PER_CLIENT=0 RUST_LOG=warn
  "$MCPQ" serve > /dev/null 2>> "$work/mcpq.err" & pids+=($!)
  wait_port "$MCPQ_PORT"
  for _ in $(seq 1 "$workers"); do
    "$MCPQ" worker > /dev/null 2>> "$work/mcpq.err" & pids+=($!)
  done
}

start_seed() {
  ensure_free "$SEED_PORT"
  (cd "$SEED_DIR" && exec "$SEED_VENV/bin/uvicorn" app:app --host 127.0.0.1 --port "$SEED_PORT" \
     --workers 1 --no-access-log) > /dev/null 2>> "$work/seed.err" & pids+=($!)
  wait_port "$SEED_PORT"
}

record() { # label, command...
  local label=$1; shift
  local out
  out=$("$@" | tail -n 1)
  echo "$label|$out" | tee -a "$log"
}

for run in $(seq 1 "$RUNS"); do
  echo "== run $run of $RUNS"
  start_mcpq 0; start_seed
  for c in 32 1; do
    record "sync c=$c mcpq" "$MCPQ" bench sync "${MCPQ_ARGS[@]}" -c "$c" -d "$DURATION"
    record "sync c=$c seed" "$MCPQ" bench sync "${SEED_ARGS[@]}" -c "$c" -d "$DURATION"
  done
  record "enqueue c=32 mcpq" "$MCPQ" bench enqueue "${MCPQ_ARGS[@]}" -c 32 -d "$DURATION"
  stop_all

  start_mcpq 2; start_seed
  record "e2e mcpq" "$MCPQ" bench e2e "${MCPQ_ARGS[@]}" -n 20000 -c 32
  record "e2e seed" "$MCPQ" bench e2e "${SEED_ARGS[@]}" -n 20000 -c 32
  stop_all

  for n in 20000 200000; do
    rm -f "$work"/drain.db*
    record "drain n=$n" env MCPQ__DATABASE__PATH="$work/drain.db" MCPQ__SERVER__BENCH_TOOLS=true RUST_LOG=warn \
      "$MCPQ" bench drain -n "$n" -w 2
  done
done

python3 - "$log" <<'EOF'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    label, out = line.rstrip("\n").split("|", 1)
    rows.setdefault(label, []).append(out)

def nums(label, pattern):
    return [float(m.group(1)) for o in rows.get(label, []) if (m := re.search(pattern, o))]

def med(label, pattern):
    v = nums(label, pattern)
    return statistics.median(v) if v else float("nan")

RATE = r"([\d.]+) (?:req|jobs)/s"
P99 = r"p99=([\d.]+)ms"
print(f"\n| measure | mcpq | seed | ratio |\n|---|---|---|---|")
for c in (32, 1):
    m, s = med(f"sync c={c} mcpq", RATE), med(f"sync c={c} seed", RATE)
    print(f"| sync batch_sum c={c}, req/s | {m:,.0f} | {s:,.0f} | {m/s:.1f}x |")
    print(f"| sync batch_sum c={c}, p99 ms | {med(f'sync c={c} mcpq', P99):.2f} | {med(f'sync c={c} seed', P99):.2f} | |")
print(f"| durable enqueue c=32 (FULL), req/s | {med('enqueue c=32 mcpq', RATE):,.0f} | n/a | |")
print(f"| durable enqueue c=32, p99 ms | {med('enqueue c=32 mcpq', P99):.2f} | | |")
m, s = med("e2e mcpq", RATE), med("e2e seed", RATE)
print(f"| e2e 20,000 x start_long_task{{seconds:1}}, jobs/s | {m:,.0f} | {s:,.0f} | {m/s:.1f}x |")
small = med("drain n=20000", r"first \d+ jobs at ([\d.]+) jobs/s")
big_first = med("drain n=200000", r"first \d+ jobs at ([\d.]+) jobs/s")
big_all = med("drain n=200000", r"([\d.]+) jobs/s overall")
print(f"| drain 20,000 noop jobs, 2 workers, jobs/s | {small:,.0f} | | |")
print(f"| drain at 200,000 backlog: first 20,000, jobs/s | {big_first:,.0f} | | {big_first/small:.2f}x of small |")
print(f"| drain at 200,000 backlog: all 200,000, jobs/s | {big_all:,.0f} | | {big_all/small:.2f}x of small |")
print("\nraw:")
for label, outs in rows.items():
    for o in outs:
        print(f"  {label}: {o}")
EOF
