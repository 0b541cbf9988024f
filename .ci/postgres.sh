#!/usr/bin/env bash
# Makes a local PostgreSQL server available for the tests, from nothing but Debian's apt:
# installs the `postgresql` package if no server is installed, creates a cluster if there is
# none, starts it (without systemd: pg_ctlcluster --skip-systemctl-redirect), and creates the
# role and database the tests use (mcpq_ci / mcpq_ci, password login over 127.0.0.1; the role
# may create schemas, one per test, and CHECKPOINT for the benchmarks). Idempotent.
# Exits non-zero if the server cannot be reached at the end. Run as root.
set -euo pipefail
port=${MCPQ_PG_PORT:-5432}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}

if ! command -v pg_lsclusters >/dev/null 2>&1 || [ -z "$(ls /usr/lib/postgresql 2>/dev/null)" ]; then
    echo "installing Debian's postgresql package"
    as_root apt-get update -qq
    # No init system to start it here; we start the cluster ourselves below.
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
version=$(ls /usr/lib/postgresql | sort -n | tail -1)
if ! pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main"' | grep -q .; then
    as_root pg_createcluster --port "$port" "$version" main >/dev/null
fi
cluster_port=$(pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" {print $3}')
[ "$cluster_port" = "$port" ] || { echo "cluster $version/main listens on $cluster_port, not $port (set MCPQ_PG_PORT)" >&2; exit 1; }
if ! pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" {print $4}' | grep -q online; then
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start
fi
wait_ready() {
    for _ in $(seq 1 50); do
        pg_isready -q -h 127.0.0.1 -p "$port" && break
        sleep 0.2
    done
    pg_isready -h 127.0.0.1 -p "$port"
}
wait_ready
# The tests run several daemons and workers at once, each with a small pool: 100 connections
# (Debian's default) is too few when two such tests overlap.
max=$(as_root su postgres -c "psql -X -At -p $port -c 'SHOW max_connections'")
if [ "$max" -lt 300 ]; then
    as_root su postgres -c "psql -X -q -p $port -c 'ALTER SYSTEM SET max_connections = 300'"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main restart
    wait_ready
fi

as_root su postgres -c "psql -X -q -v ON_ERROR_STOP=1 -p $port" <<'SQL'
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'mcpq_ci') THEN
    CREATE ROLE mcpq_ci LOGIN PASSWORD 'mcpq_ci';
  END IF;
END $$;
SELECT 'CREATE DATABASE mcpq_ci OWNER mcpq_ci' WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'mcpq_ci')\gexec
GRANT pg_checkpoint TO mcpq_ci;
SQL
# Leftovers of an interrupted earlier run (each test drops its own schema when it ends).
PGPASSWORD=mcpq_ci psql -X -q -h 127.0.0.1 -p "$port" -U mcpq_ci mcpq_ci -v ON_ERROR_STOP=1 <<'SQL'
DO $$ DECLARE s text; BEGIN
  FOR s IN SELECT nspname FROM pg_namespace WHERE nspname LIKE 'mcpq\_test\_%' OR nspname LIKE 'mcpq\_it\_%' LOOP
    EXECUTE format('DROP SCHEMA %I CASCADE', s);
  END LOOP;
END $$;
SQL
PGPASSWORD=mcpq_ci psql -X -At -h 127.0.0.1 -p "$port" -U mcpq_ci mcpq_ci -c \
  "SELECT 'PostgreSQL ' || current_setting('server_version') || ', synchronous_commit=' || current_setting('synchronous_commit') || ', fsync=' || current_setting('fsync')"

# A second cluster, `faults`, that tests/it/faults_pg.rs stops and starts (a database outage
# under load) without disturbing the tests sharing `main`. Same role and database.
faults_port=${MCPQ_PG_FAULTS_PORT:-5433}
if ! pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "faults"' | grep -q .; then
    as_root pg_createcluster --port "$faults_port" "$version" faults >/dev/null
fi
if ! pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "faults" {print $4}' | grep -q online; then
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" faults start
fi
for _ in $(seq 1 50); do
    pg_isready -q -h 127.0.0.1 -p "$faults_port" && break
    sleep 0.2
done
as_root su postgres -c "psql -X -q -v ON_ERROR_STOP=1 -p $faults_port" <<'SQL'
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'mcpq_ci') THEN
    CREATE ROLE mcpq_ci LOGIN PASSWORD 'mcpq_ci';
  END IF;
END $$;
SELECT 'CREATE DATABASE mcpq_ci OWNER mcpq_ci' WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'mcpq_ci')\gexec
SQL
echo "fault cluster: $version/faults on port $faults_port"
