#!/usr/bin/env bash
# Run several OrcaRouter replicas of this checkout on one machine, sharing one PostgreSQL and
# one Redis, with nginx in front when it is installed: deploy/compose.yaml without containers.
#
#   scripts/replicas.sh                      # 2 replicas on 8081-8082, nginx on 8080
#   scripts/replicas.sh -n 3 -p 9001 -l 9000 # 3 replicas on 9001-9003, nginx on 9000
#
# Options:
#   -n N     replicas (default 2)
#   -p PORT  first replica's port; the others follow it (default 8081)
#   -l PORT  nginx's port (default 8080)
#   -d DIR   run dir: per-replica data dirs and logs, nginx's config and logs
#            (default data/replicas in the checkout)
#   -t SECS  how long to wait for every replica's /readyz (default 60)
#   -N       no nginx, even if it is installed
#
# Every replica gets the environment of this script: ORCAROUTER_DATABASE_URL (default
# postgresql://postgres@127.0.0.1:5432/test), ORCAROUTER_REDIS_URL (default
# redis://127.0.0.1:6379/0), ORCAROUTER_ADMIN_KEY, provider keys and the rest; each has its own
# ORCAROUTER_DATA_DIR. The migrations run once first. Ctrl-C (or SIGTERM) stops everything.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
orcarouter="$root/.venv/bin/orcarouter"
template="$root/deploy/nginx.conf"

replicas=2
base_port=8081
lb_port=8080
run_dir="$root/data/replicas"
ready_timeout=60
use_nginx=1
stop_timeout=30 # seconds a replica gets to drain after SIGTERM before SIGKILL

export ORCAROUTER_DATABASE_URL="${ORCAROUTER_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/test}"
export ORCAROUTER_REDIS_URL="${ORCAROUTER_REDIS_URL:-redis://127.0.0.1:6379/0}"

pids=() # the replicas, in order
ports=()
nginx_pid=""
force_stop=0

# Never fatal: after a Ctrl-C the reader of our output (| tee) may be gone already.
say() { printf 'replicas: %s\n' "$*" 2>/dev/null || true; }
die() {
    printf 'replicas: %s\n' "$*" >&2 || true
    exit 1
}

usage() {
    sed -n '2,/^set -euo pipefail$/{/^set /d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

# A URL with its password hidden.
redact() { sed -E 's#(//[^:/@]*):[^@/]*@#\1:***@#' <<<"$1"; }

is_count() { [[ $1 =~ ^[1-9][0-9]*$ ]]; }

port_in_use() { (: <>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The HTTP status of a GET (000 when nothing answers).
http_status() {
    if command -v curl >/dev/null 2>&1; then
        curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1" || true
    else
        "$root/.venv/bin/python" - "$1" <<'PY' || true
import sys, urllib.error, urllib.request
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=2).status, end="")
except urllib.error.HTTPError as exc:
    print(exc.code, end="")
except OSError:
    print("000", end="")
PY
    fi
}

alive() { kill -0 "$1" 2>/dev/null; }

# Start a command in its own session, so a Ctrl-C on the terminal reaches only this script,
# which then stops each process once and in order (a second signal would skip uvicorn's drain).
spawn() {
    if command -v setsid >/dev/null 2>&1; then
        setsid "$@" &
    else
        "$@" &
    fi
}

find_nginx() {
    local candidate
    for candidate in "$(command -v nginx 2>/dev/null || true)" /usr/sbin/nginx /usr/local/sbin/nginx; do
        if [[ -n $candidate && -x $candidate ]]; then
            printf '%s\n' "$candidate"
            return 0
        fi
    done
    return 1
}

# deploy/nginx.conf for this machine: our servers between the markers, "# docker-only" lines
# dropped, "# local: " lines uncommented with @RUN_DIR@, @LB_PORT@ and @USER@ filled in.
render_nginx_conf() {
    local servers="" port user_line=""
    for port in "${ports[@]}"; do
        servers+="        server 127.0.0.1:$port max_fails=2 fail_timeout=10s;"$'\n'
    done
    if [[ $EUID -eq 0 ]]; then
        # Workers as the same user as the master (root), not nobody, so they can use the run dir.
        user_line="user $(id -un) $(id -gn);"
    fi
    SERVERS="$servers" RUN_DIR="$1" LB_PORT="$lb_port" USER_LINE="$user_line" awk '
        function replace(text, from, to,    at, out) {
            out = ""
            while ((at = index(text, from)) > 0) {
                out = out substr(text, 1, at - 1) to
                text = substr(text, at + length(from))
            }
            return out text
        }
        /# BEGIN upstream servers/ { print; printf "%s", ENVIRON["SERVERS"]; skip = 1; next }
        /# END upstream servers/ { skip = 0; print; next }
        skip { next }
        /# docker-only[ \t]*$/ { next }
        match($0, /^[ \t]*# local: /) {
            indent = $0
            sub(/[^ \t].*$/, "", indent)
            line = substr($0, RLENGTH + 1)
            line = replace(line, "@RUN_DIR@", ENVIRON["RUN_DIR"])
            line = replace(line, "@LB_PORT@", ENVIRON["LB_PORT"])
            line = replace(line, "@USER@", ENVIRON["USER_LINE"])
            if (line != "") print indent line
            next
        }
        { print }
    ' "$template"
}

stop_all() {
    local pid deadline
    for pid in "${pids[@]}"; do
        if alive "$pid"; then kill -TERM "$pid" 2>/dev/null || true; fi
    done
    # QUIT: nginx finishes the requests in flight, which end as the replicas drain.
    if [[ -n $nginx_pid ]] && alive "$nginx_pid"; then kill -QUIT "$nginx_pid" 2>/dev/null || true; fi
    deadline=$((SECONDS + stop_timeout))
    for pid in "${pids[@]}" ${nginx_pid:+"$nginx_pid"}; do
        while alive "$pid"; do
            if ((force_stop || SECONDS >= deadline)); then
                say "pid $pid did not stop in time; killing it"
                kill -KILL "$pid" 2>/dev/null || true
                break
            fi
            sleep 0.2 || true
        done
        wait "$pid" 2>/dev/null || true
    done
}

cleanup() {
    local status=$?
    trap - EXIT
    # A second Ctrl-C while the replicas drain kills them at once; a closed pipe changes nothing.
    trap 'force_stop=1' INT TERM
    trap '' PIPE
    if ((${#pids[@]} > 0)) || [[ -n $nginx_pid ]]; then
        say "stopping"
        stop_all
        say "stopped"
    fi
    exit "$status"
}

while getopts ":n:p:l:d:t:Nh" opt; do
    case $opt in
    n) replicas=$OPTARG ;;
    p) base_port=$OPTARG ;;
    l) lb_port=$OPTARG ;;
    d) run_dir=$OPTARG ;;
    t) ready_timeout=$OPTARG ;;
    N) use_nginx=0 ;;
    h)
        usage
        exit 0
        ;;
    :) die "option -$OPTARG needs a value (-h for help)" ;;
    *) die "unknown option -$OPTARG (-h for help)" ;;
    esac
done
shift $((OPTIND - 1))
(($# == 0)) || die "unexpected argument '$1' (-h for help)"

for value in "$replicas" "$base_port" "$lb_port" "$ready_timeout"; do
    is_count "$value" || die "'$value' is not a positive whole number"
done
((base_port + replicas - 1 <= 65535 && lb_port <= 65535)) || die "ports must be at most 65535"
[[ -x $orcarouter ]] || die "$orcarouter is missing: run 'make install' first"

nginx=""
if ((use_nginx)); then
    nginx="$(find_nginx || true)"
fi

for ((i = 0; i < replicas; i++)); do
    ports+=("$((base_port + i))")
done
if [[ -n $nginx && " ${ports[*]} " == *" $lb_port "* ]]; then
    die "nginx's port $lb_port is also a replica's port: choose another with -l or -p"
fi
for port in "${ports[@]}" ${nginx:+"$lb_port"}; do
    ! port_in_use "$port" || die "port $port is in use on 127.0.0.1"
done

umask 077 # the logs may hold a generated admin key
mkdir -p "$run_dir"
run_dir="$(cd "$run_dir" && pwd)"

trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "database $(redact "$ORCAROUTER_DATABASE_URL"), redis $(redact "$ORCAROUTER_REDIS_URL")"
say "migrating"
"$orcarouter" migrate || die "migration failed (is the database at $(redact "$ORCAROUTER_DATABASE_URL") up?)"

for ((i = 0; i < replicas; i++)); do
    dir="$run_dir/replica-$((i + 1))"
    mkdir -p "$dir/data"
    ORCAROUTER_DATA_DIR="$dir/data" spawn "$orcarouter" serve --host 127.0.0.1 --port "${ports[i]}" \
        >"$dir/gateway.log" 2>&1
    pids+=("$!")
    say "replica $((i + 1)): pid ${pids[i]}, port ${ports[i]}, log $dir/gateway.log"
done

# Every replica ready, or the reason one is not.
deadline=$((SECONDS + ready_timeout))
for ((i = 0; i < replicas; i++)); do
    url="http://127.0.0.1:${ports[i]}/readyz"
    until [[ $(http_status "$url") == 200 ]]; do
        if ! alive "${pids[i]}"; then
            tail -n 20 "$run_dir/replica-$((i + 1))/gateway.log" >&2 || true
            die "replica $((i + 1)) exited before it was ready (log above)"
        fi
        if ((SECONDS >= deadline)); then
            tail -n 20 "$run_dir/replica-$((i + 1))/gateway.log" >&2 || true
            die "replica $((i + 1)) was not ready within ${ready_timeout}s ($url)"
        fi
        sleep 0.3
    done
done

lb_url=""
if [[ -n $nginx ]]; then
    nginx_dir="$run_dir/nginx"
    mkdir -p "$nginx_dir/tmp"
    render_nginx_conf "$nginx_dir" >"$nginx_dir/nginx.conf"
    nginx_args=(-p "$nginx_dir" -c "$nginx_dir/nginx.conf" -e "$nginx_dir/error.log")
    "$nginx" -t -q "${nginx_args[@]}" || die "nginx rejected $nginx_dir/nginx.conf (see above)"
    spawn "$nginx" "${nginx_args[@]}" -g "daemon off;"
    nginx_pid=$!
    lb_url="http://127.0.0.1:$lb_port"
    deadline=$((SECONDS + ready_timeout))
    until [[ $(http_status "$lb_url/readyz") == 200 ]]; do
        alive "$nginx_pid" || die "nginx exited; see $nginx_dir/error.log"
        ((SECONDS < deadline)) || die "nginx did not answer on $lb_url within ${ready_timeout}s"
        sleep 0.2
    done
fi

echo
say "ready: ${replicas} replica(s) sharing PostgreSQL and Redis"
for ((i = 0; i < replicas; i++)); do
    printf '  replica %d      http://127.0.0.1:%s\n' "$((i + 1))" "${ports[i]}"
done
if [[ -n $lb_url ]]; then
    printf '  load balancer  %s  (nginx; config and logs in %s)\n' "$lb_url" "$nginx_dir"
    printf '  OpenAI base URL: %s/v1\n' "$lb_url"
elif ((use_nginx)); then
    say "nginx is not installed: clients can use the replicas' ports above directly"
fi
if [[ -z ${ORCAROUTER_ADMIN_KEY:-} ]]; then
    # On a fresh database one replica generates the admin key and logs it once.
    for ((i = 0; i < replicas; i++)); do
        log="$run_dir/replica-$((i + 1))/gateway.log"
        if grep -q 'generated an admin key' "$log" 2>/dev/null; then
            say "replica $((i + 1)) generated the admin key (shown only this once; also in $log):"
            grep -o 'sk-orca-[A-Za-z0-9_-]*' "$log" | head -n 1 | sed 's/^/    /'
            break
        fi
    done
fi
say "Ctrl-C stops everything"

# Keep running until a signal; report a replica that stops on its own (the rest keep serving).
reported=()
while :; do
    running=0
    for ((i = 0; i < replicas; i++)); do
        if alive "${pids[i]}"; then
            running=$((running + 1))
        elif [[ -z ${reported[i]:-} ]]; then
            reported[i]=1
            status=0
            wait "${pids[i]}" || status=$?
            say "replica $((i + 1)) (port ${ports[i]}) exited with status $status;" \
                "log $run_dir/replica-$((i + 1))/gateway.log"
        fi
    done
    ((running > 0)) || die "every replica has exited"
    if [[ -n $nginx_pid ]] && ! alive "$nginx_pid"; then
        die "nginx exited; see $nginx_dir/error.log"
    fi
    sleep 1
done
