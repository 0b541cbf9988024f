#!/usr/bin/env bash
# Checks the Debian package the way an operator meets it: its contents and metadata
# (dpkg-deb -c / -I), lintian, then (as root) a real install: the system user, unique
# root-only keys, the conffile, the installed daemon answering a signed call made with the
# generated keys, a reinstall keeping the keys, and a purge removing them.
#
#   bash packaging/deb/check.sh target/debian/mcpq_*.deb
set -euo pipefail
deb=$1
fail() { echo "packaging/deb/check.sh: $*" >&2; exit 1; }

contents=$(dpkg-deb -c "$deb")
for path in ./usr/bin/mcpq ./etc/mcpq/mcpq.toml \
    ./lib/systemd/system/mcpq.service ./lib/systemd/system/mcpq-worker@.service \
    ./lib/systemd/system/mcpq.socket ./lib/systemd/system/mcpq.target \
    ./usr/share/doc/mcpq/copyright ./usr/share/doc/mcpq/changelog.Debian.gz \
    ./usr/share/doc/mcpq/OPERATIONS.md; do
    grep -q " $path\$" <<< "$contents" || fail "$path is not in the package"
done
# No secret ships: nothing under credentials, and the conffile names files only.
! grep -q credentials/ <<< "$contents" || fail "the package ships a credentials file"
info=$(dpkg-deb -I "$deb")
grep -q '^ Package: mcpq$' <<< "$info" || fail "control: Package"
grep -q '^ Depends: .*adduser' <<< "$info" || fail "control: Depends lacks adduser"
for script in postinst prerm postrm conffiles; do
    grep -q " $script" <<< "$info" || fail "control: no $script"
done
[ "$(dpkg-deb -f "$deb" Architecture)" = "$(dpkg --print-architecture)" ] || fail "architecture"
dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles | grep -qx /etc/mcpq/mcpq.toml ||
    fail "/etc/mcpq/mcpq.toml is not a conffile"
conf=$(dpkg-deb --fsys-tarfile "$deb" | tar -xO ./etc/mcpq/mcpq.toml)
! grep -Eq '^\s*(secret|previous_secret)\s*=' <<< "$conf" || fail "the conffile holds a secret"

# lintian: no error and no warning, except these (each a choice, not an oversight):
#  initial-upload-closes-no-bugs  we are not in the Debian archive;
#  no-manual-page                 `mcpq --help` and /usr/share/doc/mcpq are the manual;
#  systemd-service-file-refers-to-unusual-wantedby-target  mcpq.target groups the units on purpose.
lintian --fail-on error,warning --tag-display-limit 0 \
    --suppress-tags initial-upload-closes-no-bugs,no-manual-page,systemd-service-file-refers-to-unusual-wantedby-target \
    "$deb" || fail "lintian"
echo "package contents, metadata and lintian: ok"

if [ "$(id -u)" -ne 0 ]; then
    fail "the install check needs root (dpkg -i)"
fi
dpkg --purge mcpq > /dev/null 2>&1 || true
dpkg -i "$deb" > /dev/null
trap 'dpkg --purge mcpq > /dev/null 2>&1 || true' EXIT

getent passwd mcpq | grep -q ':/usr/sbin/nologin$' || fail "no mcpq system user with a nologin shell"
[ "$(id -u mcpq)" -lt 1000 ] || fail "mcpq is not a system user"
creds=/etc/mcpq/credentials
[ "$(stat -c %a:%U "$creds")" = 700:root ] || fail "$creds is $(stat -c %a:%U "$creds"), want 700:root"
for key in "$creds/server_secret" "$creds/clients/client-001" "$creds/clients/client-001.token"; do
    [ "$(stat -c %a:%U "$key")" = 600:root ] || fail "$key is $(stat -c %a:%U "$key"), want 600:root"
    grep -Eqx '[0-9a-f]{64}' "$key" || fail "$key is not a 32-byte hex key"
    grep -q dev-only "$key" && fail "$key is a development key"
done
[ "$(cat "$creds/server_secret")" != "$(cat "$creds/clients/client-001")" ] || fail "keys are not unique"
server_key=$(cat "$creds/server_secret")

# A reinstall (upgrade path) keeps the keys.
dpkg -i "$deb" > /dev/null
[ "$(cat "$creds/server_secret")" = "$server_key" ] || fail "a reinstall replaced the server key"

# The installed daemon, as its unit would run it: the service user, the credentials as
# LoadCredential= exposes them, the packaged configuration.
work=$(mktemp -d); chmod 0755 "$work"
trap 'kill "$pid" 2> /dev/null || true; rm -rf "$work"; dpkg --purge mcpq > /dev/null 2>&1 || true' EXIT
install -d -o mcpq -m 0700 "$work/credentials" "$work/state"
install -o mcpq -m 0400 "$creds/server_secret" "$work/credentials/server_secret"
install -o mcpq -m 0400 "$creds/clients/client-001" "$work/credentials/clients_client-001"
install -o mcpq -m 0400 "$creds/clients/client-001.token" "$work/credentials/clients_client-001.token"
CREDENTIALS_DIRECTORY=$work/credentials mcpq config check --config /etc/mcpq/mcpq.toml > "$work/effective"
grep -q '<redacted>' "$work/effective" || fail "config check shows no redacted secret"
! grep -q "$server_key" "$work/effective" || fail "config check printed a secret"
runuser -u mcpq -- env CREDENTIALS_DIRECTORY="$work/credentials" \
    MCPQ__DATABASE__PATH="$work/state/mcpq.db" MCPQ__SERVER__LISTEN=127.0.0.1:0 \
    MCPQ__SERVER__EMBEDDED_WORKERS=1 \
    /usr/bin/mcpq --config /etc/mcpq/mcpq.toml serve > "$work/out" 2> "$work/err" &
pid=$!
for _ in $(seq 1 100); do grep -q '^listening on' "$work/out" && break; sleep 0.1; done
addr=$(sed -n 's/^listening on //p' "$work/out")
[ -n "$addr" ] || fail "the installed daemon did not start: $(cat "$work/err")"
answer=$(MCPQ__CLIENT__URL="http://$addr" MCPQ__CLIENT__SERVER_ID=mcpq \
    MCPQ__CLIENT__SECRET_FILE="$creds/clients/client-001" \
    MCPQ__CLIENT__SERVER_SECRET_FILE="$creds/server_secret" \
    mcpq call batch_sum '{"numbers":[1,2,3]}') || fail "signed call failed: $answer"
grep -q '"total":6.0' <<< "$answer" || fail "unexpected answer: $answer"
# The development key is refused by the installed daemon.
if MCPQ__CLIENT__URL="http://$addr" MCPQ__CLIENT__SERVER_ID=mcpq \
    MCPQ__CLIENT__SERVER_SECRET_FILE="$creds/server_secret" \
    mcpq call batch_sum '{"numbers":[1]}' > "$work/dev" 2>&1; then
    fail "the installed daemon accepted the development client key"
fi
grep -q bad_signature "$work/dev" || fail "development key: $(cat "$work/dev")"
# /mcp: the generated token gets in, the development token does not.
mcp() {
    curl -s -o /dev/null -w '%{http_code}' "http://$addr/mcp" -H "Authorization: Bearer $1" \
        -H 'Content-Type: application/json' -H 'MCP-Protocol-Version: 2025-11-25' \
        -d '{"jsonrpc":"2.0","id":1,"method":"tools/list"}'
}
[ "$(mcp "$(cat "$creds/clients/client-001.token")")" = 200 ] || fail "the generated MCP token was refused"
[ "$(mcp dev-only-mcp-token-00000000000000000000000000000000)" = 401 ] || fail "the development MCP token got in"
kill "$pid"; wait "$pid" || true

dpkg --purge mcpq > /dev/null
! getent passwd mcpq > /dev/null || fail "purge left the mcpq user"
[ ! -e "$creds" ] || fail "purge left $creds"
[ ! -e /etc/mcpq/mcpq.toml ] || fail "purge left the conffile"
echo "package install, keys, signed call with the generated keys, reinstall, purge: ok"
