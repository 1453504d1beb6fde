#!/usr/bin/env bash
# Idempotent set-up of a (fresh) Debian machine for smallest_sync:
# system packages for real-audio tests, then .venv with the package + extras.
# Quiet when there is nothing to do; a second run takes well under a second.
# Run it (don't source it): scripts/bootstrap.sh
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
VENV="$REPO/.venv"
STAMP="$VENV/.bootstrap-stamp"
PYTHON="${PYTHON:-python3}"
EXTRAS="dev,emulator"

# PortAudio headers (PyAudio builds from source on Linux), a PulseAudio daemon
# + parec/pactl for the null-sink recordings, ALSA's pulse plugin so PortAudio's
# default device reaches PulseAudio, espeak-ng for the emulator's real speech,
# Xvfb (+ xauth, which xvfb-run needs but xvfb only recommends) for GUI samples,
# and the libraries PySide6's xcb platform plugin loads to open a real X window there.
# The second pass of scripts/test runs on PipeWire (scripts/pipewire.sh: the daemon,
# its session manager, its PulseAudio server, a private D-Bus); a C compiler and
# ALSA's headers build the rate-limited test device (scripts/alsa/).
# Not pipewire-alsa: Debian 12 makes it conflict with pulseaudio, so its ALSA
# plugin is unpacked privately instead (see pipewire_alsa below).
SYSTEM_DEBS=(portaudio19-dev pulseaudio pulseaudio-utils libasound2-plugins espeak-ng xvfb xauth
    libxcb-icccm4 libxcb-cursor0 libxcb-image0 libxcb-keysyms1 libxcb-render-util0 libxcb-xkb1
    libxkbcommon-x11-0 libxcb-shape0 libxcb-randr0 libxcb-xinerama0 libegl1 libgl1 libfontconfig1
    libdbus-1-3 libglib2.0-0
    pipewire pipewire-bin wireplumber pipewire-pulse dbus-daemon libasound2-dev gcc libc6-dev)

say() { printf 'bootstrap: %s\n' "$*" >&2; }
die() { printf 'bootstrap: ERROR: %s\n' "$*" >&2; exit 1; }

# Prints the packages (from the arguments) that are not installed. One dpkg-query
# call for all of them keeps the common "everything present" case cheap.
missing_debs() {
    local installed
    installed="$(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "$@" 2>/dev/null || true)"
    local p
    for p in "$@"; do
        grep -qx "$p installed" <<<"$installed" || printf '%s\n' "$p"
    done
}

APT_UPDATED=0
ensure_debs() {
    [ "$#" -gt 0 ] || return 0
    if ! command -v dpkg-query >/dev/null 2>&1; then
        say "not a Debian system; make sure the equivalents of these are installed: $*"
        return 0
    fi
    local missing
    mapfile -t missing < <(missing_debs "$@")
    [ "${#missing[@]}" -gt 0 ] || return 0
    if [ "$(id -u)" -ne 0 ]; then
        die "missing Debian packages: ${missing[*]}
  install them with:  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}"
    fi
    say "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive DEBCONF_NOWARNINGS=yes
    if [ "$APT_UPDATED" -eq 0 ]; then
        apt-get update -qq
        APT_UPDATED=1
    fi
    # --no-remove: never trade a package away (pipewire-alsa would take pulseaudio).
    apt-get install -y -qq --no-install-recommends --no-remove "${missing[@]}" >/dev/null
}

# Serialise concurrent bootstraps of the same checkout (two scripts/test at once).
LOCK="${TMPDIR:-/tmp}/smallest-sync-bootstrap-$(id -u)-$(printf '%s' "$REPO" | cksum | cut -d' ' -f1).lock"
exec 9>"$LOCK"
if command -v flock >/dev/null 2>&1; then flock 9; fi

# Phase 1: system packages, plus a Python if there is none at all.
need=("${SYSTEM_DEBS[@]}")
command -v "$PYTHON" >/dev/null 2>&1 || need+=(python3 python3-venv python3-dev)
ensure_debs "${need[@]}"
command -v "$PYTHON" >/dev/null 2>&1 || die "no '$PYTHON' on PATH"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 9))' \
    || die "$("$PYTHON" -V 2>&1) is too old: smallest_sync needs Python 3.9+"

# Is $PYTHON Debian's own? Only then can apt supply venv/headers for it.
debian_python=0
[ "$("$PYTHON" -c 'import sys; print(sys.base_prefix)')" = /usr ] && debian_python=1

# A .venv whose interpreter is gone (pyenv version removed, repo copied) or not
# runnable by this user: say so rather than deleting anything.
if [ -e "$VENV" ] && ! "$VENV/bin/python" -c '' >/dev/null 2>&1; then
    die "$VENV exists but $VENV/bin/python does not run for $(id -un); remove $VENV and re-run"
fi

if [ ! -x "$VENV/bin/python" ]; then
    # Debian's python3 has no ensurepip without python3-venv.
    if [ "$debian_python" -eq 1 ] && ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
        ensure_debs python3-venv
    fi
    say "creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi

# Re-install only when what pip reads changed (or the interpreter/repo path did).
want="$(
    {
        cat "$REPO/setup.cfg" "$REPO/pyproject.toml" 2>/dev/null || true
        printf '%s\n' "$REPO" "$EXTRAS"
        "$VENV/bin/python" -VV
    } | sha256sum | cut -d' ' -f1
)"
if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$want" ]; then
    # PyAudio has no Linux wheels: pip compiles it, which needs a C compiler
    # and Python.h (Debian's python3-dev, when $PYTHON is Debian's).
    build=()
    command -v cc >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1 || build+=(gcc)
    if [ "$debian_python" -eq 1 ] && ! "$VENV/bin/python" -c \
        'import os, sysconfig, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then
        build+=(python3-dev)
    fi
    ensure_debs "${build[@]}"
    say "installing smallest_sync[$EXTRAS] into $VENV (setup.cfg/pyproject.toml changed)"
    rm -f "$STAMP"
    (cd "$REPO" && "$VENV/bin/python" -m pip install --disable-pip-version-check -q -e ".[$EXTRAS]")
    printf '%s\n' "$want" >"$STAMP"
fi

# Phase 3: private ALSA parts for the test rig, in $ALSA_DIR (inside .venv, so
# ignored by git and private to this checkout): the rate-limited test devices
# (scripts/alsa/smallest_rate.c), PipeWire's ALSA plugin, and the ALSA configs
# that `scripts/pulse.sh env` / `scripts/pipewire.sh env` put in ALSA_CONFIG_PATH.
ALSA_DIR="$VENV/alsa"
mkdir -p "$ALSA_DIR/capture"

# Replace $1 by stdin only when it differs (atomically; quiet when unchanged).
write_if_changed() {
    local dst="$1" tmp
    tmp="$(mktemp "$dst.XXXXXX")"
    cat >"$tmp"
    if cmp -s "$tmp" "$dst"; then
        rm -f "$tmp"
    else
        chmod 644 "$tmp"
        mv -f "$tmp" "$dst"
    fi
}

# The test device: rebuilt only when missing or when its source or flags changed.
PLUGIN_SRC="$REPO/scripts/alsa/smallest_rate.c"
PLUGIN="$ALSA_DIR/libasound_module_pcm_smallest_rate.so"
PLUGIN_CFLAGS=(-O2 -g -Wall -Wextra -std=gnu11 -DPIC -fPIC -shared)
plugin_want="$({ cat "$PLUGIN_SRC"; printf '%s\n' "${PLUGIN_CFLAGS[@]}"; } | sha256sum | cut -d' ' -f1)"
if [ ! -f "$PLUGIN" ] || [ "$(cat "$ALSA_DIR/.plugin-stamp" 2>/dev/null || true)" != "$plugin_want" ]; then
    cc_bin="$(command -v cc || command -v gcc || true)"
    [ -n "$cc_bin" ] || die "no C compiler (Debian: gcc) to build $PLUGIN_SRC"
    say "building the ALSA test device ($PLUGIN)"
    "$cc_bin" "${PLUGIN_CFLAGS[@]}" -o "$PLUGIN.tmp" "$PLUGIN_SRC" -lasound -lpthread \
        || die "building $PLUGIN_SRC failed (Debian: libasound2-dev gcc libc6-dev)"
    mv -f "$PLUGIN.tmp" "$PLUGIN"
    printf '%s\n' "$plugin_want" >"$ALSA_DIR/.plugin-stamp"
fi

# PipeWire's ALSA plugin, of the same version as the installed libpipewire. The
# package conflicts with pulseaudio on Debian 12 (and would make PipeWire ALSA's
# default for the whole machine), so the two modules are taken out of its .deb.
PW_ALSA_DIR="$ALSA_DIR/pipewire"
pipewire_alsa() {
    local version tmp deb so found
    version="$(dpkg-query -W -f='${Version}' libpipewire-0.3-0 2>/dev/null || true)"
    [ -n "$version" ] || return 0 # no PipeWire here; scripts/pipewire.sh says so when used
    if [ "$(cat "$PW_ALSA_DIR/version" 2>/dev/null || true)" = "$version" ] &&
        [ -f "$PW_ALSA_DIR/libasound_module_pcm_pipewire.so" ]; then
        return 0
    fi
    say "unpacking PipeWire's ALSA plugin ($version) into $PW_ALSA_DIR"
    tmp="$(mktemp -d)"
    local apt_opts=(-qq)
    # apt's _apt sandbox user cannot write into a private temporary directory.
    [ "$(id -u)" -ne 0 ] || apt_opts+=(-o APT::Sandbox::User=root)
    if ! (cd "$tmp" && apt-get download "${apt_opts[@]}" "pipewire-alsa=$version" >/dev/null 2>&1); then
        if [ "$(id -u)" -eq 0 ] && [ "$APT_UPDATED" -eq 0 ]; then
            apt-get update -qq
            APT_UPDATED=1
        fi
        (cd "$tmp" && apt-get download "${apt_opts[@]}" "pipewire-alsa=$version" >/dev/null) || {
            rm -rf "$tmp"
            die "could not download pipewire-alsa=$version (apt-get download)"
        }
    fi
    deb="$(find "$tmp" -maxdepth 1 -name 'pipewire-alsa_*.deb' | head -n 1)"
    dpkg-deb -x "$deb" "$tmp/root"
    mkdir -p "$PW_ALSA_DIR"
    for so in libasound_module_pcm_pipewire.so libasound_module_ctl_pipewire.so; do
        found="$(find "$tmp/root" -name "$so" | head -n 1)"
        if [ -z "$found" ]; then
            rm -rf "$tmp"
            die "$so not found in $deb"
        fi
        cp -f "$found" "$PW_ALSA_DIR/$so.tmp"
        mv -f "$PW_ALSA_DIR/$so.tmp" "$PW_ALSA_DIR/$so"
    done
    rm -rf "$tmp"
    printf '%s\n' "$version" >"$PW_ALSA_DIR/version"
}
pipewire_alsa

# ALSA configs. For a run on <server> (pulse or pipewire):
#   ALSA_CONFIG_PATH=/usr/share/alsa/alsa.conf:$ALSA_DIR/asound-<server>.conf
# The stock alsa.conf loads /etc/alsa/conf.d through its hook 0, and what is set
# there (pulseaudio's "default is pulse whenever a server answers", pipewire-alsa's
# "default is pipewire") would beat a plain file listed after alsa.conf. Ours is
# loaded by hook 1, which runs after hook 0, so the default chosen here holds
# whatever else the machine has installed.
# The test devices are a separate file, added to ALSA_CONFIG_PATH only where they
# are wanted (tests/devices.py's fixtures): listed everywhere, they would become
# PortAudio's default output whenever the sound server is gone.
CAPTURE_DEFAULT="$ALSA_DIR/capture"
device_pcm() { # name description rates channels_min channels_max
    cat <<EOF
pcm.$1 {
    type smallest_rate
    rates [ $3 ]
    channels_min $4
    channels_max $5
    step_us 1000
    # In \$SMALLEST_SYNC_DEVICE_DIR (tests/devices.py sets one per test), else $CAPTURE_DEFAULT.
    capture {
        @func concat
        strings [
            { @func getenv vars [ SMALLEST_SYNC_DEVICE_DIR ] default "$CAPTURE_DEFAULT" }
            "/$1.s16le"
        ]
    }
    log {
        @func concat
        strings [
            { @func getenv vars [ SMALLEST_SYNC_DEVICE_DIR ] default "$CAPTURE_DEFAULT" }
            "/$1.log"
        ]
    }
    hint {
        show on
        description "$2"
    }
}
EOF
}
{
    printf '# Generated by scripts/bootstrap.sh: the rate-limited test devices (scripts/alsa/smallest_rate.c).\n'
    # shellcheck disable=SC2016  # a literal ${...} for the reader to paste
    printf '# Use: ALSA_CONFIG_PATH="${ALSA_CONFIG_PATH:-/usr/share/alsa/alsa.conf}:%s"\n' "$ALSA_DIR/devices.conf"
    printf 'pcm_type.smallest_rate {\n    lib "%s"\n}\n' "$PLUGIN"
    device_pcm usb48 "smallest_sync test device: 44100/48000 Hz, 1-2 channels, like a Pi's USB DAC" \
        "44100 48000" 1 2
    device_pcm hdmi48 "smallest_sync test device: 48000 Hz stereo only, like a Pi's HDMI" \
        "48000" 2 2
} | write_if_changed "$ALSA_DIR/devices.conf"

write_if_changed "$ALSA_DIR/default-pulse.conf" <<'EOF'
# Generated by scripts/bootstrap.sh: ALSA's default device is the PulseAudio
# server named by $PULSE_SERVER (scripts/pulse.sh).
pcm.!default {
    type pulse
    hint {
        show on
        description "PulseAudio (the server in PULSE_SERVER)"
    }
}
ctl.!default {
    type pulse
}
EOF

write_if_changed "$ALSA_DIR/default-pipewire.conf" <<EOF
# Generated by scripts/bootstrap.sh: ALSA's default device is PipeWire's ALSA
# plugin, talking to the daemon in \$PIPEWIRE_RUNTIME_DIR (scripts/pipewire.sh).
pcm_type.pipewire {
    lib "$PW_ALSA_DIR/libasound_module_pcm_pipewire.so"
}
ctl_type.pipewire {
    lib "$PW_ALSA_DIR/libasound_module_ctl_pipewire.so"
}
pcm.!default {
    type pipewire
    playback_node "-1"
    capture_node "-1"
    hint {
        show on
        description "PipeWire (the daemon in PIPEWIRE_RUNTIME_DIR)"
    }
}
ctl.!default {
    type pipewire
}
EOF

for server in pulse pipewire; do
    write_if_changed "$ALSA_DIR/asound-$server.conf" <<EOF
# Generated by scripts/bootstrap.sh. Use as
#   ALSA_CONFIG_PATH=/usr/share/alsa/alsa.conf:$ALSA_DIR/asound-$server.conf
# Hook 1 runs after alsa.conf's hook 0 (/etc/alsa/conf.d): this file has the last word.
@hooks.1 {
    func load
    files [
        "$ALSA_DIR/default-$server.conf"
    ]
    errors true
}
EOF
done
