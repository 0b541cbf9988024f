#!/usr/bin/env bash
# PostgreSQL figures for BENCHMARKS.md, each against a peer or a baseline in the same run,
# reps interleaved. Before every run: every mcpq process stopped, `sync`, and a CHECKPOINT
# (PostgreSQL's fsyncs slow down by an order of magnitude while anything else writes).
#
#   bash ../shared/peers/apalis-postgres/setup-pg.sh       # as root: cluster up, role+db pgq
#   The drain against apalis runs on the server's defaults (apalis's best: with
#   autovacuum_naptime = 10s its drain fell from 11.3k to 1.4-1.9k jobs/s here). The churn run
#   uses mcpq's recommended setting (OPERATIONS.md), set before it and reset after:
#   su postgres -c "psql -c \"ALTER SYSTEM SET autovacuum_naptime = '10s'\" -c 'SELECT pg_reload_conf()'"
#   su postgres -c "psql -c 'ALTER SYSTEM RESET autovacuum_naptime' -c 'SELECT pg_reload_conf()'"
#   cargo build --release
#   cargo build --release --manifest-path ../shared/peers/apalis-postgres/Cargo.toml
#   bash benches/postgres.sh drain 3        # 200k backlog, 2 workers: mcpq vs apalis-postgres
#   bash benches/postgres.sh churn 1        # drain after 1,000,000 jobs of churn vs fresh
#   bash benches/postgres.sh enqueue 3      # durable enqueues over signed HTTP: SQLite vs PostgreSQL
#   bash benches/postgres.sh two 3          # one daemon vs two daemons on one PostgreSQL
#   bash benches/postgres.sh e2e 3          # enqueue + 2 workers + polls: SQLite vs PostgreSQL
#   bash benches/postgres.sh sync 3         # sync calls (nonce shared through PostgreSQL) vs SQLite
#
# Environment: PGURL (default the peers' pgq database), N (drain backlog, 200000),
# DUR (seconds per closed-loop run, 5), C (connections, 64).
set -u
KIND=$1; RUNS=$2
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN=${BIN:-target/release/mcpq}
PEER=${PEER:-../shared/peers/apalis-postgres/target/release/apalis-pg-peer}
PGURL=${PGURL:-postgres://pgq:pgq@127.0.0.1:5432/pgq?sslmode=disable}
N=${N:-200000}; DUR=${DUR:-5}; C=${C:-64}
W=${TMPDIR:-/tmp}/mcpq-pg-bench; mkdir -p "$W"
SCHEMA=mcpq_bench
export MCPQ__SERVER__EMBEDDED_WORKERS=0 MCPQ__SERVER__BENCH_TOOLS=true \
       MCPQ__LIMITS__MAX_QUEUED_PER_CLIENT=0 MCPQ__METRICS__LISTEN="" RUST_LOG=${RUST_LOG:-warn} \
       MCPQ__POSTGRES__SCHEMA=$SCHEMA

psql_() { psql -X -q -At "$PGURL" "$@"; }
stop() {
    pkill -f "mcpq.* (serve|worker)"; sleep 0.3
    for port in 18801 18802; do
        while (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null; do sleep 0.1; done
    done
}
quiet() { sync; psql_ -c CHECKPOINT; }
fresh_pg() { psql_ -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE"; }
on_pg() { export MCPQ__DATABASE__URL=$PGURL; }
on_sqlite() { export MCPQ__DATABASE__URL="" MCPQ__DATABASE__PATH=$W/m.db; rm -f "$W"/m.db*; }

serve() { # serve PORT: start a daemon, wait for its port
    "$BIN" serve > /dev/null 2>> "$W/err" &
    for _ in $(seq 1 200); do (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.05; done
    echo "daemon on $1 did not start; see $W/err" >&2; exit 1
}

settings() {
    psql_ -c "SELECT string_agg(name || '=' || setting, ' ' ORDER BY name) FROM pg_settings WHERE name IN
      ('server_version','synchronous_commit','fsync','shared_buffers','wal_sync_method','max_wal_size','commit_delay','autovacuum_naptime')"
}
echo "# $(date -u +%FT%TZ) $KIND x$RUNS on $(nproc) cores; PostgreSQL: $(settings)"

for r in $(seq 1 "$RUNS"); do
  case $KIND in
    drain)
      stop; quiet
      echo "apalis-postgres: $("$PEER" -n "$N" -c 2 --batch-size 100 --enqueue bulk --chunk 1000 --db "$PGURL" | tail -1)"
      stop; fresh_pg; on_pg; quiet
      echo "mcpq: $("$BIN" bench drain -n "$N" --workers 2 | tail -1)" ;;
    churn)
      # Fresh-table drain, then 5 x 200k jobs through the table (each drained and deleted by
      # the retention code), then the same drain on the churned table.
      stop; fresh_pg; on_pg; quiet
      echo "mcpq fresh: $("$BIN" bench drain -n "$N" --workers 2 --prune-after | grep '^drain')"
      for i in 1 2 3 4 5; do
        "$BIN" bench drain -n 200000 --workers 2 --prune-after | sed "s/^/  churn $i: /"
      done
      psql_ -c "SELECT 'jobs: ' || n_live_tup || ' live, ' || n_dead_tup || ' dead tuples; last autovacuum ' || coalesce(last_autovacuum::text, 'never') FROM pg_stat_user_tables WHERE schemaname = '$SCHEMA' AND relname = 'jobs'"
      quiet
      echo "mcpq after 1,000,000 jobs of churn: $("$BIN" bench drain -n "$N" --workers 2 --prune-after | grep '^drain')" ;;
    enqueue)
      for store in sqlite postgres; do
        stop; if [ $store = sqlite ]; then on_sqlite; else fresh_pg; on_pg; fi; quiet
        export MCPQ__SERVER__LISTEN=127.0.0.1:18801; serve 18801
        echo "$store: $("$BIN" bench enqueue --url http://127.0.0.1:18801 -c "$C" -d "$DUR" | tail -1)"
      done ;;
    sync)
      for store in sqlite postgres; do
        stop; if [ $store = sqlite ]; then on_sqlite; else fresh_pg; on_pg; fi; quiet
        export MCPQ__SERVER__LISTEN=127.0.0.1:18801; serve 18801
        echo "$store: $("$BIN" bench sync --url http://127.0.0.1:18801 -c "$C" -d "$DUR" | tail -1)"
      done ;;
    two)
      stop; fresh_pg; on_pg; quiet
      export MCPQ__SERVER__LISTEN=127.0.0.1:18801; serve 18801
      echo "one daemon: $("$BIN" bench enqueue --url http://127.0.0.1:18801 -c "$C" -d "$DUR" | tail -1)"
      stop; fresh_pg; quiet
      export MCPQ__SERVER__LISTEN=127.0.0.1:18801; serve 18801
      export MCPQ__SERVER__LISTEN=127.0.0.1:18802; serve 18802
      "$BIN" bench enqueue --url http://127.0.0.1:18801 -c $((C / 2)) -d "$DUR" | tail -1 > "$W/a" &
      first=$!
      "$BIN" bench enqueue --url http://127.0.0.1:18802 -c $((C / 2)) -d "$DUR" | tail -1 > "$W/b"
      wait $first
      echo "two daemons: A $(cat "$W/a")"
      echo "             B $(cat "$W/b")"
      awk '{for (i = 1; i <= NF; i++) if ($(i+1) == "req/s") s += $i} END {printf "two daemons combined: %.0f req/s\n", s}' "$W/a" "$W/b" ;;
    e2e)
      for store in sqlite postgres; do
        stop; if [ $store = sqlite ]; then on_sqlite; else fresh_pg; on_pg; fi; quiet
        export MCPQ__SERVER__LISTEN=127.0.0.1:18801; serve 18801
        for _ in 1 2; do "$BIN" worker > /dev/null 2>> "$W/err" & done
        sleep 0.3
        echo "$store: $("$BIN" bench e2e --url http://127.0.0.1:18801 -n 20000 -c 32 --tool noop --args '{}' | tail -1)"
      done ;;
    *) echo "unknown kind $KIND" >&2; exit 2 ;;
  esac
done
stop
