#!/usr/bin/env bash
# A private PulseAudio daemon for the real-audio tests:
#   scripts/pulse.sh start|stop|status|env
# Its only sink is the null sink "nullout" (24 kHz, mono, s16le), so PortAudio's
# *default* device (ALSA "default" -> pulse plugin) plays into it and
# `parec --device=nullout.monitor` hears exactly what was played.
#
# The daemon is private to this checkout: its socket, cookie, config and state
# live in $PULSE_DIR, and clients find it only through the variables printed by
# `env` (PULSE_SERVER, PULSE_COOKIE, and ALSA_CONFIG_PATH naming the private ALSA
# config from scripts/bootstrap.sh that makes ALSA's default device the pulse plugin).
# Nothing is written to /etc or to the user's ~/.config, and a user's own sound
# server is neither used nor touched.
#   eval "$(scripts/pulse.sh env)"    # then run pytest / python by hand
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
# Short path under /tmp (unix socket paths are limited to 108 bytes), one per
# user and checkout so two clones never share or kill each other's daemon.
PULSE_DIR="${SMALLEST_PULSE_DIR:-/tmp/smallest-sync-pulse-$(id -u)-$(printf '%s' "$REPO" | cksum | cut -d' ' -f1)}"
RUNTIME="$PULSE_DIR/runtime"
SOCKET="$RUNTIME/native"
PIDFILE="$RUNTIME/pid"
COOKIE="$PULSE_DIR/home/.config/pulse/cookie"
LOG="$PULSE_DIR/pulse.log"
ALSA_CONF="$REPO/.venv/alsa/asound-pulse.conf" # written by scripts/bootstrap.sh
SINK=nullout
RATE=24000

say() { printf 'pulse.sh: %s\n' "$*" >&2; }
die() { printf 'pulse.sh: ERROR: %s\n' "$*" >&2; exit 1; }

client() { PULSE_SERVER="unix:$SOCKET" PULSE_COOKIE="$COOKIE" "$@"; }

daemon_pid() {
    local pid
    pid="$(cat "$PIDFILE" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    # Alive, not a zombie (PID 1 in some containers never reaps), and really ours.
    local state
    state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)"
    [ -n "$state" ] && [ "$state" != Z ] || return 1
    [ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" = pulseaudio ] || return 1
    printf '%s\n' "$pid"
}

is_running() {
    daemon_pid >/dev/null && client pactl info >/dev/null 2>&1
}

start() {
    if ! command -v pulseaudio >/dev/null 2>&1 || ! command -v pactl >/dev/null 2>&1; then
        die "pulseaudio/pactl not installed (run scripts/bootstrap.sh as root)"
    fi
    if is_running; then
        check_sink
        return 0
    fi
    # Leftovers of a daemon that died (or was SIGKILLed) would make it refuse to start.
    rm -f "$PIDFILE" "$SOCKET"
    # Refuse a pre-planted directory (shared /tmp): it must be ours and private.
    mkdir -p "$PULSE_DIR"
    if [ -L "$PULSE_DIR" ] || [ ! -O "$PULSE_DIR" ]; then
        die "$PULSE_DIR is not a directory owned by $(id -un)"
    fi
    chmod 700 "$PULSE_DIR"
    mkdir -p "$RUNTIME" "$PULSE_DIR/state" "$PULSE_DIR/home/.config/pulse"
    chmod 700 "$RUNTIME"
    # Pin the sink's rate: with the default alternate-sample-rate (48000) the null
    # sink switches to 48 kHz for a 48 kHz stream and stays there, after which a
    # 24 kHz recording is resampled and no longer bit-exact.
    # No shared memory: with hundreds of short-lived client streams (the test suite)
    # the memfd block import hits an assertion and the daemon aborts (upstream
    # issue 824, seen here); copying over the socket is plenty for one mono stream.
    cat >"$PULSE_DIR/daemon.conf" <<EOF
default-sample-format = s16le
default-sample-rate = $RATE
alternate-sample-rate = $RATE
default-sample-channels = 1
avoid-resampling = no
enable-shm = no
enable-memfd = no
EOF
    # HOME/XDG_CONFIG_HOME keep the daemon's cookie out of the user's ~/.config.
    # -n: no default.pa, so no hardware sinks and no suspend-on-idle.
    # norewinds=1: without it the monitor loses the first ~225 samples of each
    # new stream (the sink rewinds over audio the monitor already delivered).
    # auth-anonymous: the socket lives in a 0700 directory; clients need no cookie.
    env HOME="$PULSE_DIR/home" XDG_CONFIG_HOME="$PULSE_DIR/home/.config" \
        PULSE_CONFIG="$PULSE_DIR/daemon.conf" PULSE_RUNTIME_PATH="$RUNTIME" \
        PULSE_STATE_PATH="$PULSE_DIR/state" \
        pulseaudio --daemonize=yes --exit-idle-time=-1 -n --use-pid-file=yes \
        --realtime=no --high-priority=no --log-target="file:$LOG" \
        --load="module-null-sink sink_name=$SINK rate=$RATE channels=1 format=s16le norewinds=1" \
        --load="module-native-protocol-unix auth-anonymous=1 socket=$SOCKET" \
        || die "pulseaudio failed to start; log: $LOG
$(tail -n 20 "$LOG" 2>/dev/null)"
    # --daemonize returns once the daemon is initialised, so it must answer now.
    is_running || die "pulseaudio started but does not answer on $SOCKET; log: $LOG"
    check_sink
}

check_sink() {
    local def
    def="$(client pactl get-default-sink 2>/dev/null || true)"
    [ "$def" = "$SINK" ] || die "default sink is '$def', expected '$SINK'"
}

stop() {
    local pid
    if ! pid="$(daemon_pid)"; then
        rm -f "$PIDFILE" "$SOCKET"
        return 0
    fi
    kill -TERM "$pid"
    # Not our child, so no `wait`; and kill -0 is true for zombies. Poll /proc briefly.
    local i
    for ((i = 0; i < 50; i++)); do
        daemon_pid >/dev/null || break
        sleep 0.1
    done
    if daemon_pid >/dev/null; then
        say "pulseaudio (pid $pid) ignored SIGTERM; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$PIDFILE" "$SOCKET"
}

status() {
    local pid
    if pid="$(daemon_pid)" && client pactl info >/dev/null 2>&1; then
        local spec
        spec="$(client pactl list short sinks | awk -v s="$SINK" '$2 == s {print $4, $5, $6}')"
        printf 'running: pid %s, PULSE_SERVER=unix:%s, default sink %s (%s)\n' \
            "$pid" "$SOCKET" "$(client pactl get-default-sink)" "${spec:-missing!}"
        return 0
    fi
    printf 'not running\n'
    return 3
}

print_env() {
    printf 'export PULSE_SERVER=%q\n' "unix:$SOCKET"
    printf 'export PULSE_COOKIE=%q\n' "$COOKIE"
    # ALSA's default -> the pulse plugin, whatever the machine's own ALSA config
    # says (pipewire-alsa makes PipeWire the default).
    if [ -f "$ALSA_CONF" ]; then
        printf 'export ALSA_CONFIG_PATH=%q\n' "/usr/share/alsa/alsa.conf:$ALSA_CONF"
    fi
    printf 'export SMALLEST_SYNC_SOUND_SERVER=pulseaudio\n'
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    env) print_env ;;
    *)
        printf 'usage: %s start|stop|status|env\n' "$0" >&2
        exit 2
        ;;
esac
