#!/usr/bin/env bash
# The fleet's central store: PostgreSQL 15 + pgvector from Debian's packages, in one command.
#
#   sudo bash scripts/fleet_server.sh up DIR [PORT]   install if needed, create DIR/data once, start on 127.0.0.1:PORT
#   bash scripts/fleet_server.sh install               only install (postgresql-15, pgvector)
#   bash scripts/fleet_server.sh start DIR [PORT]      start an existing (or new) server in DIR
#   bash scripts/fleet_server.sh stop DIR              fast shutdown
#
# DIR/admin.dsn (mode 600) holds the superuser's connection string (random password, never
# printed); DIR/port the port. The server listens on 127.0.0.1 only, SCRAM passwords on TCP.
# As root the server runs as the 'postgres' user. Bookworm's archive has no pgvector package:
# it is then built from Debian's own pgvector source package (trixie) against postgresql-15.
set -euo pipefail
PG=15
BIN=/usr/lib/postgresql/$PG/bin
PGVECTOR_SUITE=trixie

as_owner() {  # run a server command as the data directory's owner (never as root)
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

install() {
    local apt_updated=0
    if [ ! -x "$BIN/initdb" ] || [ ! -d "/usr/lib/postgresql/$PG/lib/pgxs" ]; then
        apt-get update -qq && apt_updated=1
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "postgresql-$PG" "postgresql-server-dev-$PG" >/dev/null
    fi
    [ -f "/usr/share/postgresql/$PG/extension/vector.control" ] && return 0
    [ "$apt_updated" = 1 ] || apt-get update -qq
    if apt-cache show "postgresql-$PG-pgvector" >/dev/null 2>&1; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "postgresql-$PG-pgvector" >/dev/null
        return 0
    fi
    local work
    work=$(mktemp -d)
    mkdir -p "$work/lists/partial" "$work/cache/archives/partial"
    echo "deb-src http://deb.debian.org/debian $PGVECTOR_SUITE main" >"$work/sources.list"
    local opts=(-o "Dir::Etc::SourceList=$work/sources.list" -o Dir::Etc::SourceParts=/dev/null
        -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o APT::Sandbox::User=root)
    apt-get "${opts[@]}" update -qq >/dev/null
    (cd "$work" && apt-get "${opts[@]}" source --download-only pgvector >/dev/null 2>&1)
    tar -xzf "$work"/pgvector_*.orig.tar.gz -C "$work"
    # OPTFLAGS="": no -march=native, so the library runs on any x86-64 / arm64 of its kind
    make -s -C "$work"/pgvector-*/ -j2 PG_CONFIG="$BIN/pg_config" OPTFLAGS="" >/dev/null
    make -s -C "$work"/pgvector-*/ install PG_CONFIG="$BIN/pg_config" >/dev/null
    rm -rf "$work"
}

start() {
    local dir=$1 port=${2:-$(cat "$1/port" 2>/dev/null || echo 5432)}
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    [ "$(id -u)" = 0 ] && chown postgres "$dir"
    chmod 700 "$dir"
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        local password
        password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
        (umask 077 && printf '%s\n' "$password" >"$dir/pw" && printf 'postgresql://postgres:%s@127.0.0.1:%s/postgres\n' "$password" "$port" >"$dir/admin.dsn")
        [ "$(id -u)" = 0 ] && chown postgres "$dir/pw"
        as_owner "$BIN/initdb" -D "$dir/data" -U postgres --pwfile="$dir/pw" --auth-local=scram-sha-256 \
            --auth-host=scram-sha-256 -E UTF8 >/dev/null
        rm -f "$dir/pw"
        echo "$port" >"$dir/port"
    fi
    as_owner "$BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir" start >/dev/null
    echo "fleet server up on 127.0.0.1:$port (connection string in $dir/admin.dsn)"
}

stop() {
    local dir=$1
    [ -f "$dir/data/postmaster.pid" ] || return 0
    as_owner "$BIN/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null || true
}

case "${1:-}" in
    install) install ;;
    up) install && start "$2" "${3:-}" ;;
    start) start "$2" "${3:-}" ;;
    stop) stop "$2" ;;
    *) sed -n '2,9p' "$0" >&2; exit 2 ;;
esac
