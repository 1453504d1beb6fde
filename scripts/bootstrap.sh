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
SYSTEM_DEBS=(portaudio19-dev pulseaudio pulseaudio-utils libasound2-plugins espeak-ng xvfb xauth
    libxcb-icccm4 libxcb-cursor0 libxcb-image0 libxcb-keysyms1 libxcb-render-util0 libxcb-xkb1
    libxkbcommon-x11-0 libxcb-shape0 libxcb-randr0 libxcb-xinerama0 libegl1 libgl1 libfontconfig1
    libdbus-1-3 libglib2.0-0)

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
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
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
