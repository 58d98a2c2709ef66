#!/usr/bin/env bash
# Makes sure the Redis, PostgreSQL and MariaDB that the tests and the demo use are
# running, and the local Redis Cluster of the tests' second pass
# (scripts/cluster.sh): starts them when they are not, and installs them
# from Debian's packages when they are missing. Idempotent; safe to run
# before every test.
#
# Addresses: INVGEN_REDIS_URL, INVGEN_DATABASE_URL and INVGEN_MYSQL_URL (see docs/getting-started.md). Only
# servers on this machine's loopback are started or installed; for any other
# address the script only checks that it answers.
set -euo pipefail

REDIS_URL=${INVGEN_REDIS_URL:-redis://127.0.0.1:6379/0}
DATABASE_URL=${INVGEN_DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/postgres?sslmode=disable}

LOG_NAME=services
. "$(dirname "$0")/lib.sh"

local_host() { case "$1" in 127.*|localhost|::1|"[::1]") return 0;; *) return 1;; esac; }

# host and port out of scheme://[user[:pass]@]host:port/...
url_host() { local r=${1#*://}; r=${r#*@}; r=${r%%/*}; echo "${r%:*}"; }
url_port() { local r=${1#*://}; r=${r#*@}; r=${r%%/*}; echo "${r##*:}"; }

wait_for() { # what, command...
  local what=$1; shift
  for _ in $(seq 1 60); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
  die "$what did not come up"
}

# --- Redis -----------------------------------------------------------------
rhost=$(url_host "$REDIS_URL"); rport=$(url_port "$REDIS_URL")
command -v redis-cli >/dev/null || apt_install redis-tools
if redis-cli -h "$rhost" -p "$rport" ping 2>/dev/null | grep -q PONG; then
  log "redis at $rhost:$rport is up"
else
  local_host "$rhost" || die "redis at $rhost:$rport does not answer"
  command -v redis-server >/dev/null || apt_install redis-server
  log "starting redis-server on $rhost:$rport"
  redis-server --daemonize yes --bind "$rhost" --port "$rport" --save "" --appendonly no \
    --logfile /tmp/invgen-redis-"$rport".log --dir /tmp
  wait_for "redis" redis-cli -h "$rhost" -p "$rport" ping
fi

# `services.sh redis` (make demo) stops here: the demo falls back to SQLite
# when no PostgreSQL answers.
if [ "${1:-}" = redis ]; then exit 0; fi

# --- PostgreSQL ------------------------------------------------------------
phost=$(url_host "$DATABASE_URL"); pport=$(url_port "$DATABASE_URL")
command -v psql >/dev/null || apt_install postgresql-client
if ! pg_isready -q -h "$phost" -p "$pport" 2>/dev/null; then
  local_host "$phost" || die "PostgreSQL at $phost:$pport does not answer"
  if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    apt_install postgresql
  fi
  ver=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
  if ! pg_lsclusters -h 2>/dev/null | awk '{print $1, $2}' | grep -q "^$ver main$"; then
    log "creating PostgreSQL $ver cluster main"
    $SUDO pg_createcluster "$ver" main --port "$pport" >/dev/null
  fi
  log "starting PostgreSQL $ver on port $pport"
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$ver" main start || $SUDO pg_ctlcluster "$ver" main start
  wait_for "PostgreSQL" pg_isready -h "$phost" -p "$pport"
fi
if ! psql "$DATABASE_URL" -qAtc 'SELECT 1' >/dev/null 2>&1; then
  # A fresh Debian cluster asks for a password over TCP: give the URL's
  # user the URL's password, through the local socket as postgres.
  local_host "$phost" || die "cannot log in to PostgreSQL with INVGEN_DATABASE_URL"
  user=$(r=${DATABASE_URL#*://}; r=${r%%@*}; echo "${r%%:*}")
  pass=$(r=${DATABASE_URL#*://}; r=${r%%@*}; echo "${r#*:}")
  log "setting the password of PostgreSQL role $user"
  as_postgres=(runuser -u postgres --)
  [ -n "$SUDO" ] && as_postgres=(sudo -u postgres)
  "${as_postgres[@]}" psql -qp "$pport" -c "DO \$\$BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$user') THEN CREATE ROLE \"$user\" LOGIN SUPERUSER; END IF;
    ALTER ROLE \"$user\" PASSWORD '$pass'; END\$\$;"
  psql "$DATABASE_URL" -qAtc 'SELECT 1' >/dev/null || die "cannot log in to PostgreSQL with INVGEN_DATABASE_URL"
fi
log "PostgreSQL at $phost:$pport is up"
# A test proves that a server whose messages are German is read by SQLSTATE
# alone: it needs the de_DE.UTF-8 locale. A locale generated after the
# server started is seen only by a restarted server.
if local_host "$phost" && ! psql "$DATABASE_URL" -qAtc "SET lc_messages = 'de_DE.UTF-8'" >/dev/null 2>&1; then
  if ! locale -a 2>/dev/null | grep -qi '^de_DE\.utf-\?8$'; then
    command -v locale-gen >/dev/null || apt_install locales
    log "generating the de_DE.UTF-8 locale"
    $SUDO sed -i 's/^# *\(de_DE.UTF-8 UTF-8\)/\1/' /etc/locale.gen
    grep -q '^de_DE.UTF-8 UTF-8' /etc/locale.gen || echo 'de_DE.UTF-8 UTF-8' | $SUDO tee -a /etc/locale.gen >/dev/null
    $SUDO locale-gen >/dev/null
  fi
  ver=$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n 1)
  if [ -n "$ver" ] && pg_lsclusters -h 2>/dev/null | awk '{print $1, $2, $3}' | grep -q "^$ver main $pport$"; then
    log "restarting PostgreSQL $ver so that it sees the locale"
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$ver" main restart || $SUDO pg_ctlcluster "$ver" main restart
    wait_for "PostgreSQL" pg_isready -h "$phost" -p "$pport"
  fi
  psql "$DATABASE_URL" -qAtc "SET lc_messages = 'de_DE.UTF-8'" >/dev/null 2>&1 ||
    log "warning: PostgreSQL cannot speak German; the localized-server test will fail"
fi

# --- MariaDB (the mysql engine's tests) ------------------------------------
# INVGEN_MYSQL_URL is go-sql-driver/mysql's DSN: user[:pass]@tcp(host:port)/db.
MYSQL_URL=${INVGEN_MYSQL_URL:-root@tcp(127.0.0.1:3306)/test}
maddr=${MYSQL_URL#*tcp(}; maddr=${maddr%%)*}; mhost=${maddr%:*}; mport=${maddr##*:}
mcred=${MYSQL_URL%%@*}; muser=${mcred%%:*}; mdb=${MYSQL_URL##*/}; mdb=${mdb%%\?*}
# The client reads the DSN's password, if it has one, from MYSQL_PWD.
if [ "$mcred" != "$muser" ]; then export MYSQL_PWD=${mcred#*:}; fi
command -v mariadb >/dev/null || command -v mysql >/dev/null || apt_install mariadb-client
mcli=$(command -v mariadb || command -v mysql)
if ! "$mcli" -h "$mhost" -P "$mport" -u "$muser" -e 'SELECT 1' >/dev/null 2>&1; then
  local_host "$mhost" || die "MySQL/MariaDB at $mhost:$mport does not answer"
  command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || apt_install mariadb-server
  log "starting MariaDB on port $mport"
  $SUDO mkdir -p /run/mysqld && $SUDO chown mysql:mysql /run/mysqld 2>/dev/null || true
  $SUDO start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --port="$mport" --bind-address="$mhost"
  wait_for "MariaDB" "$mcli" -h "$mhost" -P "$mport" -u root -e 'SELECT 1'
  if ! "$mcli" -h "$mhost" -P "$mport" -u "$muser" -e 'SELECT 1' >/dev/null 2>&1; then
    # A fresh Debian server lets root in only through its socket.
    log "letting MariaDB's root in over TCP without a password"
    $SUDO "$mcli" -u root -e "ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD(''); FLUSH PRIVILEGES;"
  fi
fi
"$mcli" -h "$mhost" -P "$mport" -u "$muser" -e "CREATE DATABASE IF NOT EXISTS \`$mdb\`" || die "cannot use MySQL/MariaDB with INVGEN_MYSQL_URL"
log "MariaDB at $mhost:$mport is up"

# --- Redis Cluster ---------------------------------------------------------
# The second pass of `make test` runs against a local 6-node cluster
# (scripts/cluster.sh; ports from INVGEN_CLUSTER_PORTS, default 7001-7006).
bash "$(dirname "$0")/cluster.sh" start >/dev/null
