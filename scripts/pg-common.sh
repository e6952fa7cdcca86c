# Shared by scripts/postgres and scripts/pg-formation: finds PostgreSQL's
# binaries (installing the Debian package `postgresql` when absent, with
# apt-get as root or through sudo), and how to run them (as the user
# postgres when this runs as root, which PostgreSQL refuses). Sets BIN and
# AS; defines port_free PORT.

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
