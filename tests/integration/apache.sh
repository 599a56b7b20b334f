# shellcheck shell=bash
# tests/integration/apache.sh: the stack under Apache 2.4 + mod_fcgid instead of lighttpd
# (apache/httpd.conf, which includes the deployment site apache/story-gateway.conf).
#
# lib.sh sources this file when SG_HOST=apache is in the environment; start_stack,
# stop_stack and restart_stack then start and stop Apache, so a suite runs unchanged:
#
#     SG_HOST=apache bash tests/integration/10-health.sh
#
# A suite may also source it after lib.sh and then set SG_HOST=apache (80-apache.sh).
#
# What a suite sees under Apache:
#   - `apache2 -f apache/httpd.conf -DFOREGROUND` listens on 127.0.0.1:$PORT. APACHE_PID
#     is its PID, and so is LIGHTTPD_PID (suites read it as "the front server").
#     Its children: mod_fcgid's process manager, which spawns the gateways on demand, and
#     one event-MPM worker process.
#   - Run by root, Apache's children and the gateways run as APACHE_USER (www-data, else
#     nobody): Apache refuses root. TEST_DIR and SG_VAR are made traversable for it, and
#     it must be able to read build/story-gateway, www/ and RATE_LIMITS_FILE (checked).
#   - The error log (Apache's lines and the gateway's JSON lines) is
#     $SG_VAR/apache-error.log, the access log $SG_VAR/apache-access.log;
#     lighttpd-error.log and lighttpd-access.log in SG_VAR are symlinks to them, so
#     gateway_log and the suites that read those files read Apache's.
#   - Every ${NAME} of the config files that is unset is passed to Apache as empty (the
#     gateway's default), since Apache would keep an undefined ${NAME} as literal text.
#   - GATEWAY_THREADS is 1 whatever the suite exports (story-gateway.conf says why).
#   - TEST_NAME ends in ".apache": the suite has its own scratch folder.
#
#   - When Apache's user cannot reach the repository (a clone under /root), Apache runs
#     from a copy of the binary, www/ and the limits file under /tmp (_apache_stage);
#     SG_VAR, SG_BIN, SG_ROOT and RATE_LIMITS_FILE then point there.
#
# Globals (read them, do not assign them): APACHE_PID, APACHE_STAGE, APACHE_USER,
# APACHE_GROUP.

APACHE_PID=
APACHE_STAGE=
APACHE_USER=
APACHE_GROUP=
APACHE_MODULES=/usr/lib/apache2/modules
_APACHE_CMD=()

# apache_tree PID: print every descendant of PID (children, grandchildren...), one a line.
apache_tree() {
    local -a todo=("$1")
    local p k
    while [ "${#todo[@]}" -gt 0 ]; do
        p=${todo[0]}
        todo=("${todo[@]:1}")
        for k in $(ps -o pid= --ppid "$p" 2>/dev/null); do
            echo "$k"
            todo+=("$k")
        done
    done
}

# apache_is_gateway PID: true when PID runs the gateway binary, SG_BIN (not a zombie).
apache_is_gateway() {
    [ "$(readlink "/proc/$1/exe" 2>/dev/null)" == "${SG_BIN:-$SG_BUILD/story-gateway}" ]
}

# apache_gateway_pids: the running gateway processes of the current Apache, one a line.
apache_gateway_pids() {
    local p
    [ -n "$APACHE_PID" ] || return 0
    for p in $(apache_tree "$APACHE_PID"); do
        if apache_is_gateway "$p"; then echo "$p"; fi
    done
}

# apache_alive PID...: print those of the PIDs that still run (a zombie has exited).
apache_alive() {
    local p
    for p in "$@"; do
        case $(ps -o stat= -p "$p" 2>/dev/null) in
            "" | Z*) ;;
            *) echo "$p" ;;
        esac
    done
}

# _apache_account: APACHE_USER / APACHE_GROUP, the account Apache's children run as.
_apache_account() {
    if [ "$(id -u)" -ne 0 ]; then
        APACHE_USER=$(id -un)
        APACHE_GROUP=$(id -gn)
    elif id -u www-data >/dev/null 2>&1; then
        APACHE_USER=www-data
        APACHE_GROUP=$(id -gn www-data)
    else
        APACHE_USER=nobody
        APACHE_GROUP=$(id -gn nobody)
    fi
}

# _apache_can_read: true when APACHE_USER can use the files the gateway needs (as root;
# a repository under /root, say, is not reachable by www-data).
_apache_can_read() {
    [ "$(id -u)" -eq 0 ] || return 0
    runuser -u "$APACHE_USER" -- test -x "$SG_BIN" -a -r "$RATE_LIMITS_FILE" \
        -a -r "$SG_ROOT/www/index.html" -a -x "$SG_VAR"
}

# _apache_stage: as root, when APACHE_USER cannot reach the repository, run Apache from
# a copy: SG_VAR becomes a folder under /tmp (kept across restart_stack) holding the
# binary, www/, apache/ and the limits file; SG_BIN, SG_ROOT and RATE_LIMITS_FILE point
# there. $TEST_DIR/var/apache-*.log link to its logs, $TEST_DIR/apache-stage names it;
# apache_unstage removes it at exit.
_apache_stage() {
    local src=$RATE_LIMITS_FILE f
    if [ -z "$APACHE_STAGE" ]; then
        APACHE_STAGE=$(mktemp -d /tmp/sg-apache.XXXXXX) || bail "apache: mktemp failed"
        chmod 755 "$APACHE_STAGE"
        echo "$APACHE_STAGE" >"$TEST_DIR/apache-stage"
        mkdir -p "$TEST_DIR/var" "$APACHE_STAGE/site"
        for f in apache-error.log apache-access.log; do
            touch "$APACHE_STAGE/$f"
            ln -sfn "$APACHE_STAGE/$f" "$TEST_DIR/var/$f"
        done
        note "apache: $APACHE_USER cannot reach $ROOT; running from a copy in $APACHE_STAGE"
    fi
    SG_VAR=$APACHE_STAGE
    cp "$SG_BUILD/story-gateway" "$APACHE_STAGE/story-gateway"
    cp -r "$ROOT/www" "$ROOT/apache" "$APACHE_STAGE/site/"
    SG_BIN=$APACHE_STAGE/story-gateway
    SG_ROOT=$APACHE_STAGE/site
    # A missing limits file stays missing (a suite may test just that).
    if [ "$(dirname "$src")" != "$APACHE_STAGE" ]; then
        RATE_LIMITS_FILE=$APACHE_STAGE/$(basename "$src")
        rm -f "$RATE_LIMITS_FILE"
        [ ! -e "$src" ] || cp "$src" "$RATE_LIMITS_FILE"
    fi
    chmod -R a+rX "$APACHE_STAGE"
}

# _apache_env: fill _APACHE_CMD with `env NAME=value... apache2 ...`: every ${NAME} that
# the config files use, its value or empty, checked against mod_fcgid's 127-byte cut.
_apache_env() {
    local conf="$ROOT/apache/httpd.conf" site="$ROOT/apache/story-gateway.conf" name
    local -a vars=()
    while IFS= read -r name; do
        vars+=("$name=${!name:-}")
    done < <(grep -hv '^[[:space:]]*#' "$conf" "$site" |
        grep -oE '[$][{][A-Za-z_][A-Za-z0-9_]*[}]' | tr -d "\${}" | LC_ALL=C sort -u)
    while IFS= read -r name; do
        if [ "$(printf '%s' "${!name:-}" | wc -c)" -gt 127 ]; then
            bail "apache: $name is longer than 127 bytes; mod_fcgid would cut it"
        fi
    done < <(sed -n 's/^ *FcgidInitialEnv  *[A-Z_]*  *"[$][{]\([A-Z_]*\)[}]".*/\1/p' "$site")
    _APACHE_CMD=(env "${vars[@]}" apache2 -f "$conf" -DFOREGROUND)
}

# apache_unstage: at exit (lib.sh's _cleanup), move the logs of a staged run to
# $TEST_DIR/var, in place of their links, and remove the stage.
apache_unstage() {
    local f
    [ -n "$APACHE_STAGE" ] || return 0
    for f in apache-error.log apache-access.log; do
        rm -f "$TEST_DIR/var/$f"
        mv "$APACHE_STAGE/$f" "$TEST_DIR/var/$f" 2>/dev/null
    done
    rm -rf "$APACHE_STAGE"
}

# apache_prepare: everything a launch needs; bails (a failure, not a skip) when apache2
# or mod_fcgid is missing. Needs start_stack's exports (PORT, SG_VAR, ...).
apache_prepare() {
    command -v apache2 >/dev/null ||
        bail "apache: apache2 is not installed (scripts/deps.sh installs apache2 and libapache2-mod-fcgid)"
    [ -f "$APACHE_MODULES/mod_fcgid.so" ] ||
        bail "apache: $APACHE_MODULES/mod_fcgid.so missing (package libapache2-mod-fcgid)"
    _apache_account
    export SG_USER=$APACHE_USER SG_GROUP=$APACHE_GROUP
    chmod 755 "$TEST_DIR" "$SG_VAR"
    if [ -n "$APACHE_STAGE" ] || ! _apache_can_read; then
        _apache_stage
    fi
    _apache_can_read ||
        bail "apache: user $APACHE_USER cannot run $SG_BIN or read $RATE_LIMITS_FILE," \
            "$SG_ROOT/www or $SG_VAR (Apache runs the gateway as $APACHE_USER when started by root)"
    ln -sfn apache-error.log "$SG_VAR/lighttpd-error.log"
    ln -sfn apache-access.log "$SG_VAR/lighttpd-access.log"
    touch "$SG_VAR/apache-error.log"
    _apache_env
}

# apache_start: start Apache in the foreground (a background job of this shell) with the
# current environment; sets APACHE_PID and LIGHTTPD_PID. Waits for nothing: start_stack
# does (_apache_launch); a suite may call it to see how Apache starts a gateway that
# cannot start, and stop it with stop_stack.
apache_start() {
    apache_prepare
    "${_APACHE_CMD[@]}" >>"$SG_VAR/apache-error.log" 2>&1 &
    APACHE_PID=$!
    # shellcheck disable=SC2034  # lib.sh's, read by the suites
    LIGHTTPD_PID=$APACHE_PID
}

# _apache_launch: apache_start on $PORT and wait for /healthz to answer 200 or 503 (as
# _lighttpd_launch). Returns 1 on timeout (10 s), when Apache exits, or when it warned of
# an undefined config variable (AH00111).
_apache_launch() {
    local s mark
    apache_prepare
    mark=$(wc -l <"$SG_VAR/apache-error.log")
    apache_start
    for _ in $(seq 100); do
        sleep 0.1
        kill -0 "$APACHE_PID" 2>/dev/null || return 1
        s=$(healthz_status)
        if [ "$s" == 200 ] || [ "$s" == 503 ]; then
            if tail -n +$((mark + 1)) "$SG_VAR/apache-error.log" | grep -q AH00111; then
                note "apache: a config variable is undefined (AH00111)"
                return 1
            fi
            return 0
        fi
    done
    return 1
}

# apache_stop_stack: stop_stack under Apache. SIGTERM to Apache, which stops its children;
# mod_fcgid's process manager stops the gateways. Waits for Apache (10 s, then SIGKILL),
# then 1 s for every process it had; gateways still running are listed in
# STACK_SURVIVORS and killed at exit (as lib.sh does), Apache's own are killed now.
apache_stop_stack() {
    local tree alive p
    STACK_SURVIVORS=
    [ -n "$APACHE_PID" ] || return 0
    tree=$(apache_tree "$APACHE_PID")
    kill "$APACHE_PID" 2>/dev/null
    for _ in $(seq 100); do
        kill -0 "$APACHE_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$APACHE_PID" 2>/dev/null
    wait "$APACHE_PID" 2>/dev/null
    APACHE_PID=
    # shellcheck disable=SC2034  # lib.sh's, read by the suites
    LIGHTTPD_PID=
    for _ in $(seq 10); do
        # shellcheck disable=SC2086  # a list of PIDs
        alive=$(apache_alive $tree)
        [ -z "$alive" ] && break
        sleep 0.1
    done
    for p in $alive; do
        if apache_is_gateway "$p"; then
            STACK_SURVIVORS="$STACK_SURVIVORS $p"
            _ORPHAN_PIDS+=("$p")
        elif [ "$(readlink "/proc/$p/exe" 2>/dev/null)" == "$(command -v apache2)" ]; then
            kill -KILL "$p" 2>/dev/null
        fi
    done
    STACK_SURVIVORS=${STACK_SURVIVORS# }
    if [ -n "$alive" ]; then
        note "apache_stop_stack: PIDs $(paste -sd' ' - <<<"$alive") outlived Apache by 1 s"
    fi
    return 0
}

# apache_holders DIR: the PIDs of the processes that still have a file under DIR open, or
# DIR as their working directory, one a line (a file deleted since counts too).
apache_holders() {
    find /proc/[0-9]*/cwd /proc/[0-9]*/fd/ -maxdepth 1 -lname "$1/*" 2>/dev/null |
        cut -d/ -f3 | LC_ALL=C sort -un
}

# apache_run_suite NAME: run tests/integration/NAME.sh with SG_HOST=apache in a bash of its
# own (at most APACHE_SUITE_TIMEOUT s, default 240) and report each of its checks as one
# of this script's, "NAME under Apache: ..."; its "#" lines pass through, any other output
# as "# | ...". Then: it ended with its summary line, it really ran Apache, Apache's log
# shows no crash, and no process of it is left (nothing holds a file of its folder).
apache_run_suite() {
    local name=$1 out dir rc line t0 n_ok=0 n_fail=0
    out="$TEST_DIR/$name.log"
    dir="$ROOT/tests/out/$name.apache"
    t0=$(date +%s%N)
    SG_HOST=apache timeout -k 10 "${APACHE_SUITE_TIMEOUT:-240}" \
        bash "$ROOT/tests/integration/$name.sh" </dev/null >"$out" 2>&1
    rc=$?
    while IFS= read -r line; do
        if [[ $line =~ ^ok\ [0-9]+\ -\ (.*)$ ]]; then
            pass "$name under Apache: ${BASH_REMATCH[1]}"
            n_ok=$((n_ok + 1))
        elif [[ $line =~ ^not\ ok\ [0-9]+\ -\ (.*)$ ]]; then
            fail "$name under Apache: ${BASH_REMATCH[1]}"
            n_fail=$((n_fail + 1))
        elif [[ $line == '#'* ]]; then
            printf '%s\n' "$line"
        else
            printf '# | %s\n' "$line"
        fi
    done <"$out"
    note "$name under Apache: $n_ok passed, $n_fail failed, exit status $rc," \
        "$((($(date +%s%N) - t0) / 1000000)) ms (log: $out)"
    if [ "$rc" -ne 0 ] && [ "$n_fail" -eq 0 ]; then
        fail "$name under Apache: exited with status $rc without a failed check"
    fi
    check_true "$name under Apache: ran its checks to its summary line" \
        grep -qE "^# $name\.apache: [0-9]+ passed" "$out"
    check_true "$name under Apache: its stack was Apache (AH00489 in its log)" \
        grep -q AH00489 "$dir/var/apache-error.log"
    check_false "$name under Apache: no crashed gateway or Apache child in its log" \
        grep -qE 'unexpected signal|exit signal|core dumped' "$dir/var/apache-error.log"
    check_eq "$name under Apache: no process left holding a file of tests/out/$name.apache" \
        "" "$(apache_holders "$dir" | paste -sd' ' -)"
    if [ -f "$dir/apache-stage" ]; then
        check_eq "$name under Apache: no process left holding a file of its stage" \
            "" "$(apache_holders "$(cat "$dir/apache-stage")" | paste -sd' ' -)"
    fi
}
