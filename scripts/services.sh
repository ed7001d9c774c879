#!/usr/bin/env bash
# Makes sure PostgreSQL and Redis answer on localhost: starts them when they
# are installed but down, installs them (Debian, as root) when missing, and
# otherwise says how to get them. Sourced by scripts/start and scripts/test.
set -euo pipefail

PGHOST_ADDR=127.0.0.1
PGPORT_NUM=5432
REDIS_PORT=6379

say() { printf '%s\n' "$*" >&2; }

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_port() {
    for _ in $(seq 1 60); do
        port_open "$1" "$2" && return 0
        sleep 0.5
    done
    return 1
}

can_install() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; }

apt_install() {
    if [ ! -f /var/lib/apt/periodic/hashgrid-updated ] || [ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v lock)" ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        mkdir -p /var/lib/apt/periodic && touch /var/lib/apt/periodic/hashgrid-updated
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

ensure_postgres() {
    port_open "$PGHOST_ADDR" "$PGPORT_NUM" && return 0
    if ! command -v pg_ctlcluster >/dev/null && ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
        if can_install; then
            say "installing PostgreSQL…"
            apt_install postgresql postgresql-client
        else
            say "PostgreSQL is not running on $PGHOST_ADDR:$PGPORT_NUM and is not installed."
            say "Start one with: docker compose up -d postgres redis   (or install postgresql)"
            return 1
        fi
    fi
    say "starting PostgreSQL…"
    local version
    version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n1)
    if [ -z "$version" ]; then
        say "no PostgreSQL cluster found in /etc/postgresql; create one with pg_createcluster"
        return 1
    fi
    pg_ctlcluster --skip-systemctl-redirect "$version" main start >/dev/null 2>&1 || true
    wait_port "$PGHOST_ADDR" "$PGPORT_NUM" || { say "PostgreSQL did not come up"; return 1; }
    # A fresh Debian install has peer/md5 auth; the project expects trust on localhost.
    if ! psql -h "$PGHOST_ADDR" -U postgres -Atc 'select 1' >/dev/null 2>&1; then
        local hba="/etc/postgresql/$version/main/pg_hba.conf"
        if [ -w "$hba" ]; then
            say "allowing trust authentication on localhost (dev machine)…"
            sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/; s/^(local\s+all\s+postgres\s+)\S+/\1trust/' "$hba"
            pg_ctlcluster --skip-systemctl-redirect "$version" main reload >/dev/null 2>&1 || true
        fi
    fi
}

ensure_redis() {
    port_open 127.0.0.1 "$REDIS_PORT" && return 0
    if ! command -v redis-server >/dev/null; then
        if can_install; then
            say "installing Redis…"
            apt_install redis-server
        else
            say "Redis is not running on 127.0.0.1:$REDIS_PORT and is not installed."
            say "Start one with: docker compose up -d postgres redis   (or install redis-server)"
            return 1
        fi
    fi
    say "starting Redis…"
    redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no >/dev/null
    wait_port 127.0.0.1 "$REDIS_PORT" || { say "Redis did not come up"; return 1; }
}

ensure_services() {
    ensure_postgres
    ensure_redis
}
