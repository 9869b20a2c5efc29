#!/usr/bin/env bash
# The whole benchmark in one command: bash bench/run.sh  (or: make bench)
# Profiles, on the same set-up: bash bench/run.sh profile [scenario ...] [--seconds N] ...
# Installs nginx, wrk and valgrind (Debian) if missing, prepares the venv, runs bench/bench.py,
# which writes bench/results/report-<UTC timestamp>.md and prints it. Tunables: bench/README.md.
set -euo pipefail

cd "$(dirname "$0")/.."

need=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v taskset >/dev/null 2>&1 || need+=(util-linux)
command -v valgrind >/dev/null 2>&1 || need+=(valgrind)  # bench/instructions.py
if [ ${#need[@]} -gt 0 ]; then
    echo "[bench] installing ${need[*]} with apt-get" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi
export PATH="$PATH:/usr/sbin:/sbin"

if [ ! -x .venv/bin/python ] || [ ! -f .venv/.installed ]; then
    make install >&2
fi

BENCH_TMP="$(mktemp -d "${TMPDIR:-/tmp}/orca-bench.XXXXXX")"
export BENCH_TMP
child=""

cleanup() {
    status=$?
    trap - EXIT INT TERM
    if [ -n "$child" ] && kill -0 "$child" 2>/dev/null; then
        kill -TERM "$child" 2>/dev/null || true
        wait "$child" 2>/dev/null || true
    fi
    # Anything bench.py started and could not stop (each in its own process group).
    if [ -f "$BENCH_TMP/pids" ]; then
        while read -r pid; do
            if kill -0 "$pid" 2>/dev/null; then
                kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
            fi
        done <"$BENCH_TMP/pids"
    fi
    rm -rf "$BENCH_TMP"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

script=bench/bench.py
if [ "${1:-}" = "profile" ]; then  # bash bench/run.sh profile [profile.py's arguments]
    script=bench/profile.py
    shift
fi
.venv/bin/python "$script" "$@" &
child=$!
wait "$child"
