# Shared by scripts/services.sh and scripts/cluster.sh: logging and
# installing from Debian's packages. The sourcing script sets LOG_NAME.

log() { printf '%s: %s\n' "$LOG_NAME" "$*" >&2; }
die() { log "$*"; exit 1; }

SUDO=
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
updated=
apt_install() {
  command -v apt-get >/dev/null || die "$* missing and apt-get not found: install $* yourself"
  if [ -z "$updated" ]; then $SUDO apt-get update -qq; updated=1; fi
  log "installing $* from Debian's packages"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
