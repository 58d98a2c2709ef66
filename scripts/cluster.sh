#!/usr/bin/env bash
# A local Redis Cluster for the tests: 6 nodes (3 masters, 3 replicas) of
# Debian's redis-server on loopback.
#
#   scripts/cluster.sh start    start it (idempotent); prints the seeds
#   scripts/cluster.sh status   each node's role and state; fails unless ok
#   scripts/cluster.sh stop     stop the nodes this script started
#
# Ports: INVGEN_CLUSTER_PORTS, six ports as "7001-7006" (the default) or
# "7001,7002,…". Each node's cluster bus listens on its port + 10000, so
# every port must be below 55536. Each node keeps its cluster config, pid
# file and log in ${TMPDIR:-/tmp}/invgen-cluster/<port>, and nothing else
# on disk (--save "" --appendonly no). A replica's first sync starts at
# once (--repl-diskless-sync-delay 0), not after the 5 s a master waits by
# default for more replicas to share it.
#
# `start` prints the seed addresses, comma-separated, on stdout (all else
# goes to stderr), so that INVGEN_REDIS_CLUSTER=$(scripts/cluster.sh start)
# works. It returns only once every node reports cluster_state:ok and every
# replica's link to its master is up: a replica that has not finished its
# first sync cannot be promoted.
set -euo pipefail

PORTS_SPEC=${INVGEN_CLUSTER_PORTS:-7001-7006}
BASE=${TMPDIR:-/tmp}
BASE=${BASE%/}/invgen-cluster
HOST=127.0.0.1
NODE_TIMEOUT=2000

LOG_NAME=cluster
. "$(dirname "$0")/lib.sh"

# --- ports -----------------------------------------------------------------
PORTS=()
case "$PORTS_SPEC" in
  *-*)
    lo=${PORTS_SPEC%-*}; hi=${PORTS_SPEC#*-}
    [[ $lo =~ ^[0-9]+$ && $hi =~ ^[0-9]+$ ]] || die "INVGEN_CLUSTER_PORTS=$PORTS_SPEC: want LOW-HIGH or a comma-separated list"
    for ((p = lo; p <= hi; p++)); do PORTS+=("$p"); done;;
  *)
    IFS=', ' read -r -a PORTS <<<"$PORTS_SPEC";;
esac
[ "${#PORTS[@]}" -eq 6 ] || die "INVGEN_CLUSTER_PORTS=$PORTS_SPEC: want 6 ports, got ${#PORTS[@]}"
for p in "${PORTS[@]}"; do
  [[ $p =~ ^[0-9]+$ ]] && [ "$p" -ge 1024 ] && [ "$p" -lt 55536 ] ||
    die "port $p: want 1024..55535 (the cluster bus listens on port + 10000)"
done

seeds() { local IFS=,; local a=("${PORTS[@]/#/$HOST:}"); echo "${a[*]}"; }

# --- installing --------------------------------------------------------------

# --- one node ----------------------------------------------------------------
cli() { local p=$1; shift; redis-cli -h "$HOST" -p "$p" "$@" 2>/dev/null; }
answers() { cli "$1" ping | grep -q PONG; }
field() { # port "cluster info"|"info replication" field
  local p=$1 f=$3 cmd
  read -r -a cmd <<<"$2"
  cli "$p" "${cmd[@]}" | tr -d '\r' | sed -n "s/^$f://p"
}
dir_of() { echo "$BASE/$1"; }

# pid_of prints the pid of the node this script started on port, if it
# still runs: the pid file's process must be a redis-server on that port.
pid_of() {
  local f pid
  f="$(dir_of "$1")/redis.pid"
  [ -f "$f" ] || return 1
  pid=$(cat "$f" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q "redis-server.*:$1\b" || return 1
  echo "$pid"
}

stop_node() {
  local p=$1 pid
  if pid=$(pid_of "$p"); then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    log "stopped the node on port $p (pid $pid)"
  fi
  rm -rf "$(dir_of "$p")"
}

start_node() {
  local p=$1 d
  d=$(dir_of "$p")
  mkdir -p "$d"
  redis-server --daemonize yes --bind "$HOST" --port "$p" \
    --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout "$NODE_TIMEOUT" \
    --repl-diskless-sync-delay 0 \
    --save "" --appendonly no --dir "$d" --logfile "$d/redis.log" --pidfile "$d/redis.pid" 9>&-
}

# --- the cluster -------------------------------------------------------------
# healthy: every node answers, knows six nodes, reports cluster_state:ok, and
# every replica's link is up.
healthy() {
  local p
  for p in "${PORTS[@]}"; do
    [ "$(field "$p" 'cluster info' cluster_state)" = ok ] || return 1
    [ "$(field "$p" 'cluster info' cluster_known_nodes)" = 6 ] || return 1
    if [ "$(field "$p" 'info replication' role)" = slave ]; then
      [ "$(field "$p" 'info replication' master_link_status)" = up ] || return 1
    fi
  done
}

wait_healthy() { # seconds
  local i
  for ((i = 0; i < $1 * 5; i++)); do healthy && return 0; sleep 0.2; done
  return 1
}

# lock serializes starts and stops (two `make test` at once). The nodes must
# not inherit fd 9, or they would hold the lock for good.
lock() {
  mkdir -p "$BASE"
  if command -v flock >/dev/null; then
    exec 9>"$BASE/lock"
    flock -w 120 9 || die "another cluster.sh holds $BASE/lock"
  fi
}

ours() { # every node runs, started by this script
  local p
  for p in "${PORTS[@]}"; do pid_of "$p" >/dev/null && answers "$p" || return 1; done
}

start() {
  command -v redis-cli >/dev/null || apt_install redis-tools
  command -v redis-server >/dev/null || apt_install redis-server
  lock
  if ours; then
    # Up: give a failover or a resync in progress a moment to finish.
    if wait_healthy 10; then
      log "redis cluster on ports ${PORTS[*]} is up"
      seeds
      return 0
    fi
    log "the nodes on ports ${PORTS[*]} run but the cluster is not ok: recreating it"
  fi
  local p
  for p in "${PORTS[@]}"; do stop_node "$p"; done
  for p in "${PORTS[@]}"; do
    if answers "$p"; then
      die "port $p answers but its server was not started by this script: stop it or set INVGEN_CLUSTER_PORTS"
    fi
  done
  log "starting 6 redis-server nodes on ports ${PORTS[*]} (in $BASE)"
  for p in "${PORTS[@]}"; do start_node "$p"; done
  for p in "${PORTS[@]}"; do
    for i in $(seq 1 100); do answers "$p" && break; sleep 0.1; done
    answers "$p" || die "the node on port $p did not start; see $(dir_of "$p")/redis.log"
  done
  log "creating the cluster (3 masters, 3 replicas)"
  local out
  if ! out=$(redis-cli --cluster create "${PORTS[@]/#/$HOST:}" --cluster-replicas 1 --cluster-yes 2>&1); then
    printf '%s\n' "$out" >&2
    die "redis-cli --cluster create failed"
  fi
  wait_healthy 60 || { status >&2 || true; die "the cluster did not become ok with every replica in sync"; }
  log "redis cluster on ports ${PORTS[*]} is up"
  seeds
}

status() {
  local p bad=0 role state
  for p in "${PORTS[@]}"; do
    if ! answers "$p"; then
      echo "$HOST:$p down"; bad=1; continue
    fi
    role=$(field "$p" 'info replication' role)
    state=$(field "$p" 'cluster info' cluster_state)
    if [ "$role" = slave ]; then
      echo "$HOST:$p replica of $(field "$p" 'info replication' master_port) link=$(field "$p" 'info replication' master_link_status) cluster_state=$state"
      [ "$(field "$p" 'info replication' master_link_status)" = up ] || bad=1
    else
      echo "$HOST:$p master cluster_state=$state"
    fi
    [ "$state" = ok ] || bad=1
  done
  [ "$bad" = 0 ] && seeds
  return "$bad"
}

stop() {
  local p
  lock
  for p in "${PORTS[@]}"; do stop_node "$p"; done
}

case "${1:-}" in
  start) start;;
  stop) stop;;
  status) status;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2;;
esac
