#!/usr/bin/env bash
# A private PipeWire for the real-audio tests, the counterpart of scripts/pulse.sh:
#   scripts/pipewire.sh start|stop|status|env
# pipewire + wireplumber + pipewire-pulse on a private D-Bus session bus. The only
# sink is the null sink "nullout" (24 kHz mono; the graph itself runs at 24 kHz, so
# a 24 kHz stream is never resampled and `parec --device=nullout.monitor` records
# it bit-exactly). Clients reach it through the variables `env` prints:
# PULSE_SERVER and PULSE_COOKIE (parec, pactl), PIPEWIRE_RUNTIME_DIR (PipeWire's
# own clients: its ALSA plugin, pw-cli) and ALSA_CONFIG_PATH, whose private config
# makes ALSA's "default" PipeWire's ALSA plugin (`type pipewire`), not the pulse one.
#
# Everything lives in $PW_DIR (config, state, sockets, logs); nothing is written to
# /etc or ~, the daemons get a clean environment, and WirePlumber's hardware
# monitors (ALSA cards, Bluetooth, cameras) are off, so no real device is opened.
#   eval "$(scripts/pipewire.sh env)"    # then run pytest / python by hand
# SMALLEST_PIPEWIRE_DIR picks another directory (scripts/test uses one per run).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
# Short path under /tmp (unix socket paths are limited to 108 bytes), one per
# user and checkout so two clones never share or kill each other's daemons.
PW_DIR="${SMALLEST_PIPEWIRE_DIR:-/tmp/smallest-sync-pipewire-$(id -u)-$(printf '%s' "$REPO" | cksum | cut -d' ' -f1)}"
RUNTIME="$PW_DIR/runtime"
PULSE_SOCKET="$RUNTIME/pulse/native"
BUS="$RUNTIME/bus"
# pipewire-pulse asks for no cookie, but libpulse clients without one make
# ~/.config/pulse/cookie; this keeps theirs in here.
COOKIE="$PW_DIR/cookie"
CONF="$PW_DIR/config"
ALSA_CONF="$REPO/.venv/alsa/asound-pipewire.conf"
SINK=nullout
RATE=24000
# start order; stop goes backwards
DAEMONS=(dbus-daemon pipewire wireplumber pipewire-pulse)
# Bounded waits for daemons that give no readiness signal (in 0.05 s steps).
WAIT_STEPS=200

say() { printf 'pipewire.sh: %s\n' "$*" >&2; }
die() { printf 'pipewire.sh: ERROR: %s\n' "$*" >&2; exit 1; }

# A client of the private daemons; `timeout`, so a wedged daemon cannot hang us.
client() {
    timeout 10 env PULSE_SERVER="unix:$PULSE_SOCKET" PULSE_COOKIE="$COOKIE" PIPEWIRE_RUNTIME_DIR="$RUNTIME" "$@"
}

# The pid of one of our daemons, if it is alive (not a zombie) and really it.
daemon_pid() {
    local name="$1" pid state
    pid="$(cat "$RUNTIME/$name.pid" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)"
    [ -n "$state" ] && [ "$state" != Z ] || return 1
    # comm is at most 15 characters: "pipewire-pulse" fits.
    [ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" = "$name" ] || return 1
    printf '%s\n' "$pid"
}

all_alive() {
    local d
    for d in "${DAEMONS[@]}"; do daemon_pid "$d" >/dev/null || return 1; done
}

is_running() {
    all_alive && client pactl info >/dev/null 2>&1
}

# Poll `"$@"` until it succeeds while daemon $1 lives, at most WAIT_STEPS times:
# without systemd these daemons give no readiness signal, so this is bounded polling.
wait_for() {
    local name="$1" what="$2" i
    shift 2
    for ((i = 0; i < WAIT_STEPS; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        daemon_pid "$name" >/dev/null || break
        sleep 0.05
    done
    die "$what did not come up; logs in $PW_DIR:
$(tail -n 5 "$PW_DIR"/*.log 2>/dev/null)"
}

write_config() {
    mkdir -p "$CONF/pipewire/pipewire.conf.d" "$CONF/pipewire/pipewire-pulse.conf.d" \
        "$CONF/wireplumber/main.lua.d" "$CONF/wireplumber/bluetooth.lua.d" \
        "$PW_DIR/state" "$PW_DIR/home"
    # The graph runs at the sink's rate, so 24 kHz streams pass untouched (no
    # resampling, hence bit-exact) and others are resampled once. vm.overrides
    # would raise the minimum quantum to 1024 (43 ms at 24 kHz) inside a VM.
    cat >"$CONF/pipewire/pipewire.conf.d/50-smallest-sync.conf" <<EOF
context.properties = {
    default.clock.rate = $RATE
    default.clock.allowed-rates = [ $RATE ]
    default.clock.quantum = 256
    default.clock.min-quantum = 16
    default.clock.max-quantum = 2048
    vm.overrides = { }
}
EOF
    # pulse.min.quantum: parec asks for 10 ms, and the graph runs at the smallest
    # latency any client asks for; at the default floor (5.3 ms cycles) a loaded
    # machine drops whole cycles of a player's audio (measured: 2 in 20 pause/resume
    # runs beside two busy CPUs), at 10.7 ms none in 20, and a sound still lands
    # within -2..+8 ms of SinkRecorder.index_at(). Raising default.clock.min-quantum
    # instead would starve PortAudio streams whose whole buffer is shorter.
    # dont-reconnect: a PulseAudio client (parec, pactl) naming a device that does
    # not exist gets an error, as from PulseAudio, instead of being connected to the
    # default one (tests/sink.py relies on it). PortAudio does not come this way: it
    # uses PipeWire's ALSA plugin.
    cat >"$CONF/pipewire/pipewire-pulse.conf.d/50-smallest-sync.conf" <<EOF
pulse.properties = {
    vm.overrides = { }
    pulse.min.quantum = 256/$RATE
}
stream.properties = {
    node.dont-reconnect = true
}
EOF
    # No hardware: the test rig must never open a real sound card or camera.
    cat >"$CONF/wireplumber/main.lua.d/51-smallest-sync.lua" <<'EOF'
alsa_monitor.enabled = false
v4l2_monitor.enabled = false
libcamera_monitor.enabled = false
EOF
    cat >"$CONF/wireplumber/bluetooth.lua.d/51-smallest-sync.lua" <<'EOF'
bluez_monitor.enabled = false
EOF
}

# Start one daemon in its own session with a clean environment; its output goes
# to its log, and it inherits none of our descriptors (the lock on fd 9).
spawn() {
    local name="$1"
    shift
    setsid env -i PATH="/usr/sbin:/usr/bin:/sbin:/bin" LANG=C.UTF-8 \
        HOME="$PW_DIR/home" XDG_CONFIG_HOME="$CONF" XDG_STATE_HOME="$PW_DIR/state" \
        XDG_DATA_HOME="$PW_DIR/home/.local/share" XDG_CACHE_HOME="$PW_DIR/home/.cache" \
        XDG_RUNTIME_DIR="$RUNTIME" PIPEWIRE_RUNTIME_DIR="$RUNTIME" \
        DBUS_SESSION_BUS_ADDRESS="unix:path=$BUS" \
        "$@" </dev/null >>"$PW_DIR/$name.log" 2>&1 9>&- &
    printf '%s\n' "$!" >"$RUNTIME/$name.pid"
}

start() {
    local tool
    for tool in pipewire wireplumber pipewire-pulse dbus-daemon pactl pw-cli setsid; do
        command -v "$tool" >/dev/null 2>&1 || die "$tool not installed (run scripts/bootstrap.sh as root)"
    done
    if is_running; then
        check_sink
        return 0
    fi
    # Leftovers of a half-started or killed instance would hold the sockets.
    stop_daemons
    rm -rf "$RUNTIME"
    mkdir -p "$RUNTIME"
    chmod 700 "$RUNTIME"
    rm -f "$PW_DIR"/*.log
    write_config

    # --fork returns once the bus is listening: a real wait.
    env -i PATH="/usr/bin:/bin" dbus-daemon --session --fork --nopidfile --print-pid=1 \
        --address="unix:path=$BUS" </dev/null 2>>"$PW_DIR/dbus-daemon.log" 9>&- \
        >"$RUNTIME/dbus-daemon.pid" || die "dbus-daemon failed; log: $PW_DIR/dbus-daemon.log"
    spawn pipewire pipewire
    wait_for pipewire "pipewire" client pw-cli info 0
    spawn wireplumber wireplumber
    spawn pipewire-pulse pipewire-pulse
    wait_for pipewire-pulse "pipewire-pulse" client pactl info
    client pactl load-module module-null-sink sink_name="$SINK" rate="$RATE" channels=1 \
        format=s16le channel_map=mono >/dev/null || die "could not load the null sink"
    client pactl set-default-sink "$SINK"
    # WirePlumber applies the choice (and links streams) once it is up.
    wait_for wireplumber "wireplumber (default sink $SINK)" sink_is_default
    check_sink
}

sink_is_default() {
    [ "$(client pactl get-default-sink 2>/dev/null)" = "$SINK" ]
}

check_sink() {
    local def
    def="$(client pactl get-default-sink 2>/dev/null || true)"
    [ "$def" = "$SINK" ] || die "default sink is '$def', expected '$SINK'"
}

stop_daemons() {
    local i d pid
    for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
        d="${DAEMONS[$i]}"
        pid="$(daemon_pid "$d")" || continue
        kill -TERM "$pid" 2>/dev/null || true
        # Not our child (setsid), so no `wait`; poll /proc briefly.
        local n
        for ((n = 0; n < 50; n++)); do
            daemon_pid "$d" >/dev/null || break
            sleep 0.05
        done
        if daemon_pid "$d" >/dev/null; then
            say "$d (pid $pid) ignored SIGTERM; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
}

stop() {
    stop_daemons
    rm -rf "$RUNTIME"
}

status() {
    if is_running; then
        local spec pids="" d
        for d in "${DAEMONS[@]}"; do pids+=" $d=$(daemon_pid "$d")"; done
        spec="$(client pactl list short sinks | awk -v s="$SINK" '$2 == s {print $4, $5, $6}')"
        printf 'running:%s, PULSE_SERVER=unix:%s, default sink %s (%s)\n' \
            "$pids" "$PULSE_SOCKET" "$(client pactl get-default-sink)" "${spec:-missing!}"
        return 0
    fi
    printf 'not running\n'
    return 3
}

print_env() {
    # Without it ALSA's default would stay whatever the machine says (PulseAudio's
    # plugin, reaching pipewire-pulse): not the path under test.
    [ -f "$ALSA_CONF" ] || die "no $ALSA_CONF: run scripts/bootstrap.sh"
    printf 'export PULSE_SERVER=%q\n' "unix:$PULSE_SOCKET"
    printf 'export PULSE_COOKIE=%q\n' "$COOKIE"
    printf 'export PIPEWIRE_RUNTIME_DIR=%q\n' "$RUNTIME"
    printf 'export ALSA_CONFIG_PATH=%q\n' "/usr/share/alsa/alsa.conf:$ALSA_CONF"
    printf 'export SMALLEST_SYNC_SOUND_SERVER=pipewire\n'
}

lock() {
    # Refuse a pre-planted directory (shared /tmp): it must be ours and private.
    mkdir -p "$PW_DIR"
    if [ -L "$PW_DIR" ] || [ ! -O "$PW_DIR" ]; then
        die "$PW_DIR is not a directory owned by $(id -un)"
    fi
    chmod 700 "$PW_DIR"
    # Two start/stop at once (two scripts/test) take turns.
    exec 9>"$PW_DIR/lock"
    if command -v flock >/dev/null 2>&1; then flock 9; fi
}

case "${1:-}" in
    start) lock; start ;;
    stop)
        [ -d "$PW_DIR" ] || exit 0
        lock
        stop
        ;;
    status) status ;;
    env) print_env ;;
    *)
        printf 'usage: %s start|stop|status|env\n' "$0" >&2
        exit 2
        ;;
esac
