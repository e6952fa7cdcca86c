# Shared by scripts/postgres, scripts/pg-formation and
# scripts/pg-auto-failover: finds PostgreSQL's binaries (installing the
# Debian package `postgresql` when absent, with apt-get as root or through
# sudo), and how to run them (as the user postgres when this runs as root,
# which PostgreSQL refuses). Sets BIN and AS; defines port_free PORT and
# remove_when_owner_ends DIR COMMAND....; sets PG_CONF and PG_SETTINGS.

find_bin() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -n "$d" ] && [ -x "$d/postgres" ]; then echo "$d"; fi
}

BIN=$(find_bin)
if [ -z "$BIN" ]; then
  echo "PostgreSQL is not installed: installing the Debian package postgresql" >&2
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
  # The package may start its own cluster on 5432; these scripts run their own.
  $SUDO service postgresql stop >/dev/null 2>&1 || true
  BIN=$(find_bin)
  if [ -z "$BIN" ]; then
    echo "PostgreSQL still not found under /usr/lib/postgresql after installing" >&2
    exit 1
  fi
fi

# The settings every server these scripts start runs with, NAME=VALUE
# each (PG_CONF), and as `postgres` options (PG_SETTINGS, `-c NAME=VALUE`).
# max_wal_size: PostgreSQL's default of 1 GB starts a checkpoint every
# ~530 MB of WAL, every 4 to 6 s under Quire's batched writes, and then
# logs "checkpoints are occurring too frequently"; its documentation
# advises raising max_wal_size for such loads (README, "PostgreSQL's own
# settings"). PG_MAX_WAL_SIZE sets another.
PG_CONF=("max_wal_size=${PG_MAX_WAL_SIZE:-4GB}")
PG_SETTINGS=""
for kv in "${PG_CONF[@]}"; do PG_SETTINGS="$PG_SETTINGS -c $kv"; done

AS=()
if [ "$(id -u)" -eq 0 ]; then
  id postgres >/dev/null 2>&1 || useradd --system --create-home postgres
  AS=(runuser -u postgres --)
fi

# Refuses a port something already listens on.
port_free() {
  if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
    echo "port $1 on 127.0.0.1 is taken: choose other ports" >&2
    exit 3
  fi
}

# With PG_OWNER=PID: once that process and the script calling this have
# both ended, runs COMMAND (what stops the servers) and removes DIR.
# Called before anything starts, so that an owner ended (or a start that
# failed) midway leaves nothing behind.
remove_when_owner_ends() {
  [ -n "${PG_OWNER:-}" ] || return 0
  nohup bash -c '
    owner=$1 start=$2 dir=$3; shift 3
    while kill -0 "$owner" 2>/dev/null || kill -0 "$start" 2>/dev/null; do sleep 1; done
    "$@" >/dev/null 2>&1
    rm -rf "$dir"
  ' _ "$PG_OWNER" "$$" "$@" </dev/null >/dev/null 2>&1 &
}
