#!/usr/bin/env bash
# Sets up everything TradePulse needs on a fresh Debian-like machine, then runs the demo or the test suite.
#   bash deploy/bootstrap.sh run    # stack + demo data + workers + feed + API on 127.0.0.1:8000
#   bash deploy/bootstrap.sh test   # lint + the whole test suite against a real broker and database
# Idempotent: every step checks what is already there before doing anything.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
MODE="${1:-run}"
shift || true
case "$MODE" in
  run|test) ;;
  *) printf 'usage: bash deploy/bootstrap.sh run|test [args...]\n' >&2; exit 2 ;;
esac
VENV="$ROOT/.venv"

say() { printf '\033[1m[bootstrap]\033[0m %s\n' "$*"; }

apt_install() {
  if [ "$(id -u)" -ne 0 ]; then
    say "missing system packages: $*; install them (as root: apt-get install -y $*) and rerun"
    exit 1
  fi
  say "installing system packages: $*"
  DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null
}

postgres_binaries() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

ensure_system() {
  local missing=()
  if ! command -v python3 >/dev/null; then
    missing+=(python3 python3-venv)
  elif ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    missing+=(python3-venv)  # Debian ships venv's pip bootstrap separately
  fi
  if ! command -v java >/dev/null || ! java -version 2>&1 | grep -Eq 'version "(1[7-9]|[2-9][0-9])'; then
    missing+=(openjdk-17-jre-headless)
  fi
  command -v mvn >/dev/null || missing+=(maven)
  if [ -z "$(postgres_binaries)" ]; then
    missing+=(postgresql)
  fi
  if [ "$MODE" = "test" ] && ! command -v npm >/dev/null; then
    missing+=(nodejs npm)
  fi
  if [ "${#missing[@]}" -gt 0 ]; then
    local fresh_postgres=0
    [ -z "$(postgres_binaries)" ] && fresh_postgres=1
    apt_install "${missing[@]}"
    if [ "$fresh_postgres" -eq 1 ] && command -v pg_lsclusters >/dev/null; then
      # Debian's package starts a default cluster; TradePulse runs its own server under its data directory.
      pg_lsclusters -h 2>/dev/null | awk '{print $1, $2}' | while read -r version cluster; do
        pg_ctlcluster "$version" "$cluster" stop 2>/dev/null || true
      done
    fi
  fi
}

stamp_matches() {  # stamp_matches STAMPFILE INPUT...: true when the inputs are unchanged since the last run
  local stamp="$1"; shift
  [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$(cat "$@" | sha256sum)" ]
}

write_stamp() {
  local stamp="$1"; shift
  cat "$@" | sha256sum > "$stamp"
}

ensure_python() {
  if [ ! -x "$VENV/bin/python" ]; then
    if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
      say "TradePulse needs Python 3.11 or newer; python3 is $(python3 --version 2>&1)"
      exit 1
    fi
    say "creating the Python environment in .venv"
    python3 -m venv "$VENV"
  fi
  if ! stamp_matches "$VENV/.tradepulse-stamp" pyproject.toml; then
    say "installing TradePulse and its dependencies"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -e '.[test]'
    write_stamp "$VENV/.tradepulse-stamp" pyproject.toml
  fi
}

ensure_pglite() {
  local dir="$ROOT/deploy/pglite"
  [ -f "$dir/package-lock.json" ] || return 0
  if ! stamp_matches "$dir/node_modules/.tradepulse-stamp" "$dir/package-lock.json"; then
    say "installing the PGlite TimescaleDB server used by the Timescale tests"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    write_stamp "$dir/node_modules/.tradepulse-stamp" "$dir/package-lock.json"
  fi
}

ensure_system
ensure_python

case "$MODE" in
  run)
    exec "$VENV/bin/tradepulse" run "$@"
    ;;
  test)
    ensure_pglite
    say "ruff"
    "$VENV/bin/ruff" check .
    say "pytest"
    set +e
    "$VENV/bin/python" -m pytest "$@"
    status=$?
    set -e
    if [ "$status" -eq 5 ]; then
      say "pytest collected no tests"
      status=0
    fi
    exit "$status"
    ;;
esac
