#!/usr/bin/env bash
# Makes sure a PostgreSQL cluster of our own answers on 127.0.0.1 (and only
# there), for the tests and for trying several servers on one store:
#
# - Debian's postgresql, installed with apt when missing;
# - a cluster in $REPLBOX_PG_DATA (/var/lib/replbox/postgres), made with
#   initdb and owned by the postgres user, listening on 127.0.0.1 port
#   $REPLBOX_PG_PORT (55432, away from a system cluster's 5432); its unix
#   socket and log in $REPLBOX_PG_DATA-run, for the postgres user only;
# - a role `replbox` (LOGIN, CREATEDB: each test makes a database of its
#   own) with a random password (scram-sha-256 over 127.0.0.1/::1 only), and
#   a database `replbox`;
# - started with pg_ctl in the background; skipped when it answers. A
#   postmaster.pid left behind when no postgres runs (a CI that kills every
#   process between runs) is removed first.
#
# The URL to use is printed and kept in $REPLBOX_PG_DATA.url (root only),
# where the tests read it.
set -euo pipefail
say() { echo "==> postgres: $*"; }
die() { echo "==> postgres: ERROR: $*" >&2; exit 1; }

PORT=${REPLBOX_PG_PORT:-55432}
DATA=${REPLBOX_PG_DATA:-/var/lib/replbox/postgres}
RUN="$DATA-run"
URLFILE="$DATA.url"
LOG="$RUN/postgres.log"

[ "$(id -u)" = 0 ] || die "run as root (the cluster belongs to the postgres user)"
mkdir -p "$(dirname "$DATA")"
# One at a time (helpers and test runs may call this at once).
exec 9>"$DATA.lock"
flock 9

bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
if [ -z "$(bindir)" ] || [ ! -x "$(bindir)/pg_ctl" ]; then
  say "installing Debian's postgresql (apt-get; a minute or two)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends postgresql >/dev/null 2>&1 || {
    say "apt-get update first"
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends postgresql >/dev/null
  }
fi
BIN=$(bindir)
[ -x "$BIN/pg_ctl" ] || die "no pg_ctl under /usr/lib/postgresql after installing postgresql"
as_pg() { runuser -u postgres -- "$@"; }
psql_admin() { as_pg "$BIN/psql" -h "$RUN" -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -qtA "$@"; }

if [ ! -s "$DATA/PG_VERSION" ]; then
  say "initdb: a cluster in $DATA"
  install -d -o postgres -g postgres -m 0700 "$DATA"
  as_pg "$BIN/initdb" -D "$DATA" -U postgres --auth-local=peer --auth-host=scram-sha-256 \
    --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  cat >>"$DATA/postgresql.conf" <<EOF

# replbox (scripts/ensure-postgres.sh): loopback only, our own port.
listen_addresses = '127.0.0.1,::1'
port = $PORT
unix_socket_directories = '$RUN'
max_connections = 200
EOF
  # Only the replbox role over loopback (with its password); the postgres
  # superuser only through the socket, as the postgres user.
  cat >"$DATA/pg_hba.conf" <<EOF
local all postgres peer
host  all replbox 127.0.0.1/32 scram-sha-256
host  all replbox ::1/128      scram-sha-256
EOF
fi
install -d -o postgres -g postgres -m 0700 "$RUN"

answers() { as_pg "$BIN/pg_isready" -q -h "$RUN" -p "$PORT" 2>/dev/null; }
# The postmaster's pid when one runs for this cluster.
live_postmaster() {
  local pid
  pid=$(head -n 1 "$DATA/postmaster.pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = postgres ] &&
    ! grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null
}

if answers; then
  say "running on 127.0.0.1:$PORT"
else
  if [ -e "$DATA/postmaster.pid" ] && ! live_postmaster; then
    say "removing a stale postmaster.pid (no postgres runs)"
    rm -f "$DATA/postmaster.pid"
  fi
  if live_postmaster; then
    # Starting up or shutting down: wait for it rather than start another.
    for _ in $(seq 1 60); do answers && break; sleep 1; done
    answers || die "a postgres runs on $DATA but does not answer; see $LOG"
  else
    say "starting on 127.0.0.1:$PORT (log: $LOG)"
    # 9>&-: the server must not hold our lock.
    as_pg "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 start >/dev/null 9>&- ||
      die "pg_ctl could not start the cluster; see $LOG"
  fi
fi

# The role and its database; the password kept beside the cluster.
password=""
if [ -s "$URLFILE" ]; then
  password=$(sed -n 's|^postgres://replbox:\([^@]*\)@.*|\1|p' "$URLFILE")
fi
role=$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = 'replbox'")
if [ -z "$password" ] || [ "$role" != 1 ]; then
  password=$(openssl rand -hex 16)
  if [ "$role" = 1 ]; then
    echo "ALTER ROLE replbox WITH LOGIN CREATEDB PASSWORD '$password'" | psql_admin
  else
    say "making the role replbox"
    echo "CREATE ROLE replbox WITH LOGIN CREATEDB PASSWORD '$password'" | psql_admin
  fi
fi
if [ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = 'replbox'")" != 1 ]; then
  say "making the database replbox"
  psql_admin -c "CREATE DATABASE replbox OWNER replbox"
fi
url="postgres://replbox:$password@127.0.0.1:$PORT/replbox"
(umask 077; echo "$url" >"$URLFILE.tmp") && mv "$URLFILE.tmp" "$URLFILE"
say "REPLBOX_DATABASE_URL=postgres://replbox:***@127.0.0.1:$PORT/replbox (the whole URL: $URLFILE)"
