#!/usr/bin/env bash
# Installs everything Trainyard needs on a fresh Debian 12 machine (as root)
# and builds it. Safe to run again: installed packages, an existing venv and
# already-satisfied pip pins are skipped, so a second run takes a few seconds
# plus the build's own no-op time.
#
#   bash scripts/setup.sh           # from any directory
set -euo pipefail

# Debian packages. Add to this list; nothing else needs to change.
APT_PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git
  libcpp-httplib-dev nlohmann-json3-dev libsqlite3-dev libssl-dev libcli11-dev
  libgtest-dev libgmock-dev libzstd-dev
  python3-torch python3-sklearn python3-numpy libopenblas0-pthread libtorch-dev
  python3-venv python3-pip
  pybind11-dev python3-dev
  libyaml-cpp-dev
  libpugixml-dev  # XML of the EC2 Query API (src/aws)
  python3-nbclient python3-nbformat python3-ipykernel
  procps util-linux bubblewrap
  slurm-wlm munge openssh-server openssh-client iproute2
  podman runc catatonit mmdebstrap
  chromium  # the dashboard's browser tests (Playwright drives it; tests/e2e/test_dashboard.py)
  clang-14 libclang-rt-14-dev  # fuzz targets and sanitizer tests (fuzz/, scripts/fuzz.sh): libFuzzer, ASan, UBSan
  clang-format-14  # scripts/check_format.sh: the formatting .clang-format describes
)

# Package lists older than this are refreshed before installing (seconds).
APT_LISTS_MAX_AGE=$((24 * 3600))

REPO_ROOT="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)"
cd "$REPO_ROOT"

VENV="$REPO_ROOT/.venv"
SYSTEM_PYTHON=/usr/bin/python3
REQUIREMENTS="$REPO_ROOT/scripts/requirements-dev.txt"
CONSTRAINTS="$REPO_ROOT/scripts/constraints.txt"
BUILD_DIR="$REPO_ROOT/build"
BUILD_TYPE=RelWithDebInfo
EC2_METADATA_MOCK=/usr/local/bin/ec2-metadata-mock
EC2_METADATA_MOCK_VERSION=v1.13.0

step() { printf '\n==> [setup %3ds] %s\n' "$SECONDS" "$*"; }
note() { printf '    %s\n' "$*"; }
die() { printf 'setup.sh: error: %s\n' "$*" >&2; exit 1; }

# One setup at a time per tree: concurrent runs would race on the venv and
# on ninja's build directory.
mkdir -p "$BUILD_DIR"
if command -v flock >/dev/null 2>&1; then
  exec 9>"$BUILD_DIR/.setup.lock"
  if ! flock -n 9; then
    note "another setup.sh is running in this tree; waiting for it"
    flock 9
  fi
fi

# --------------------------------------------------------------------------
step "Debian packages (${#APT_PACKAGES[@]})"

missing_packages() {
  # Prints the packages of APT_PACKAGES that are not fully installed.
  local installed
  installed="$(dpkg-query -W -f='${Package} ${Status}\n' "${APT_PACKAGES[@]}" 2>/dev/null |
    awk '$2 == "install" && $3 == "ok" && $4 == "installed" { print $1 }' | sort -u)" || true
  local p
  for p in "${APT_PACKAGES[@]}"; do
    grep -qxF "$p" <<<"$installed" || printf '%s\n' "$p"
  done
}

apt_lists_fresh() {
  # True when package lists exist, are younger than APT_LISTS_MAX_AGE, and
  # every package in "$@" has an install candidate in them.
  local newest
  newest="$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -printf '%T@\n' 2>/dev/null |
    sort -n | tail -1 | cut -d. -f1)"
  [[ -n "$newest" ]] || return 1
  (($(date +%s) - newest < APT_LISTS_MAX_AGE)) || return 1
  local p candidate
  for p in "$@"; do
    candidate="$(apt-cache policy "$p" 2>/dev/null | awk '/Candidate:/ { print $2 }')"
    [[ -n "$candidate" && "$candidate" != "(none)" ]] || return 1
  done
}

mapfile -t MISSING < <(missing_packages)
if ((${#MISSING[@]} == 0)); then
  note "all installed; skipping apt"
else
  note "missing: ${MISSING[*]}"
  [[ "$(id -u)" -eq 0 ]] || die "installing packages needs root (run as root; this script does not use sudo)"
  export DEBIAN_FRONTEND=noninteractive
  updated=0
  if ! apt_lists_fresh "${MISSING[@]}"; then
    note "package lists missing or stale: apt-get update"
    apt-get update
    updated=1
  fi
  if ! apt-get install -y --no-install-recommends "${APT_PACKAGES[@]}"; then
    ((updated == 0)) || die "apt-get install failed"
    # Lists that looked fresh may still point at versions the mirror dropped.
    note "install failed with the cached lists; apt-get update and retry"
    apt-get update
    apt-get install -y --no-install-recommends "${APT_PACKAGES[@]}"
  fi
  mapfile -t MISSING < <(missing_packages)
  ((${#MISSING[@]} == 0)) || die "still not installed after apt-get: ${MISSING[*]}"
fi

# --------------------------------------------------------------------------
step "Python virtual environment ($VENV)"

[[ -x "$SYSTEM_PYTHON" ]] || die "$SYSTEM_PYTHON not found (python3 should come with python3-venv)"

venv_ok() {
  # The venv must be Debian's python with the system site-packages visible
  # (that is where torch, numpy and sklearn come from).
  [[ -x "$VENV/bin/python" && -f "$VENV/pyvenv.cfg" ]] || return 1
  grep -Eq '^include-system-site-packages *= *true' "$VENV/pyvenv.cfg" || return 1
  "$VENV/bin/python" -c 'import sys; sys.exit(0 if sys.base_prefix == "/usr" else 1)' 2>/dev/null
}

if venv_ok; then
  note "exists; keeping it"
else
  if [[ -e "$VENV" ]]; then
    note "existing .venv is unusable or not made from $SYSTEM_PYTHON --system-site-packages; recreating"
    rm -rf "$VENV"
  fi
  "$SYSTEM_PYTHON" -m venv --system-site-packages "$VENV"
  note "created with $("$VENV/bin/python" --version 2>&1)"
fi

# --------------------------------------------------------------------------
step "Python packages (scripts/requirements-dev.txt, constraints scripts/constraints.txt)"

# Fast check, no pip: every `name==version` line of the requirements must be
# installed at that version, and every pinned constraint that is installed
# must match its pin. Anything it cannot judge counts as unsatisfied.
pins_satisfied() {
  "$VENV/bin/python" - "$REQUIREMENTS" "$CONSTRAINTS" <<'PY'
import re, sys
from importlib import metadata

def pins(path):
    out = []
    with open(path) as f:
        for raw in f:
            line = raw.split("#", 1)[0].strip()
            if not line or line.startswith("-"):
                continue
            m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*==\s*([^\s;]+)", line)
            if not m:
                print(f"    cannot check '{line}' without pip")
                sys.exit(1)
            out.append((m.group(1), m.group(2)))
    return out

def installed(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None

req_path, con_path = sys.argv[1:3]
ok = True
for name, want in pins(req_path):
    have = installed(name)
    if have != want:
        print(f"    {name}: want {want}, have {have or 'nothing'}")
        ok = False
for name, want in pins(con_path):
    have = installed(name)
    if have is not None and have != want:
        print(f"    {name}: constrained to {want}, have {have}")
        ok = False
sys.exit(0 if ok else 1)
PY
}

if pins_satisfied; then
  note "all pins satisfied; skipping pip"
else
  "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input --progress-bar off \
    -r "$REQUIREMENTS" -c "$CONSTRAINTS"
  pins_satisfied || die "pip finished but the pins in $REQUIREMENTS are still not satisfied"
fi
"$VENV/bin/python" -c 'import numpy; assert numpy.__version__ == "1.24.2", numpy.__file__' ||
  die "the venv's numpy is not Debian's 1.24.2 (something shadowed it)"

# --------------------------------------------------------------------------
step "ec2-metadata-mock $EC2_METADATA_MOCK_VERSION (Amazon's instance metadata mock, for the AWS tests)"
# Built from the Go module proxy into /usr/local/bin, shared by every tree on
# the machine. It needs Go >= 1.23 (its go.mod): the machine's Go if it has
# one, else Debian's golang-go (1.19 in Debian 12, too old: then the IMDS
# tests skip, saying so).
if [[ "$("$EC2_METADATA_MOCK" --version 2>/dev/null)" == "$EC2_METADATA_MOCK_VERSION" ]]; then
  note "$EC2_METADATA_MOCK is $EC2_METADATA_MOCK_VERSION; skipping"
else
  GO="$(command -v go || true)"
  [[ -n "$GO" || ! -x /usr/local/go/bin/go ]] || GO=/usr/local/go/bin/go
  if [[ -z "$GO" ]]; then
    note "no Go toolchain: installing Debian's golang-go"
    apt-get install -y --no-install-recommends golang-go && GO="$(command -v go || true)"
  fi
  GOBIN_TMP="$(mktemp -d)"
  if [[ -n "$GO" ]] && GOBIN="$GOBIN_TMP" "$GO" install \
    "github.com/aws/amazon-ec2-metadata-mock/cmd/ec2-metadata-mock@$EC2_METADATA_MOCK_VERSION"; then
    install -m 0755 "$GOBIN_TMP/ec2-metadata-mock" "$EC2_METADATA_MOCK"
    note "installed $EC2_METADATA_MOCK"
  else
    note "WARNING: could not build ec2-metadata-mock with '${GO:-no go}' ($("${GO:-false}" version 2>/dev/null || true));"
    note "the tests that need it (src/aws IMDS, spot interruption) will skip. It needs Go >= 1.23."
  fi
  rm -rf "$GOBIN_TMP"
fi

# --------------------------------------------------------------------------
step "Python package trainyard (python/, importable from .venv)"
# The equivalent of `pip install -e python/` without pip: a .pth file naming
# python/ (what an editable install writes too). The native client
# (trainyard._yard) is built below by CMake (target yard_python_binding).
VENV_SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
TRAINYARD_PTH="$VENV_SITE/trainyard-dev.pth"
if [[ "$(cat "$TRAINYARD_PTH" 2>/dev/null)" == "$REPO_ROOT/python" ]]; then
  note "already importable"
else
  printf '%s\n' "$REPO_ROOT/python" >"$TRAINYARD_PTH"
  note "wrote $TRAINYARD_PTH"
fi

# --------------------------------------------------------------------------
step "CMake configure ($BUILD_DIR, Ninja, $BUILD_TYPE)"

# A build directory made by another generator cannot be reused: drop its cache.
if [[ -f "$BUILD_DIR/CMakeCache.txt" ]] &&
  ! grep -qx 'CMAKE_GENERATOR:INTERNAL=Ninja' "$BUILD_DIR/CMakeCache.txt"; then
  note "build directory was made by another generator; clearing its cache"
  rm -rf "$BUILD_DIR/CMakeCache.txt" "$BUILD_DIR/CMakeFiles"
fi
# Every target links cpp-httplib compiled from its source (CMakeLists.txt,
# yard_httplib: 256 KiB body reads; yard-portable needs it static, Debian
# ships no static library of it). Without it CMake warns, links Debian's
# shared library and builds everything but yard-portable.
HTTPLIB_SOURCE_DIR="$(bash "$REPO_ROOT/scripts/httplib_source.sh")" ||
  { note "cpp-httplib's source could not be fetched: Debian's library is linked, yard-portable not built"; HTTPLIB_SOURCE_DIR=""; }
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE="$BUILD_TYPE" -DYARD_HTTPLIB_SOURCE_DIR="$HTTPLIB_SOURCE_DIR"

# --------------------------------------------------------------------------
step "Build (cmake --build, $(nproc) jobs)"
cmake --build "$BUILD_DIR" --parallel "$(nproc)"

# --------------------------------------------------------------------------
step "Container images (podman: containers.conf, localhost/trainyard/base-cpu and bullseye-sshd)"
# crun (podman's default) refuses this host's hybrid cgroups, and rlimits
# can be lowered, never raised, without CAP_SYS_RESOURCE: runc, and ulimits
# every container may set. A drop-in, so the distribution's file stays as is.
CONTAINERS_CONF=/etc/containers/containers.conf.d/50-trainyard.conf
CONTAINERS_CONF_TEXT='# Written by Trainyard'"'"'s scripts/setup.sh.
[engine]
runtime = "runc"

[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]'
if [[ "$(cat "$CONTAINERS_CONF" 2>/dev/null)" == "$CONTAINERS_CONF_TEXT" ]]; then
  note "$CONTAINERS_CONF is up to date"
else
  mkdir -p "$(dirname "$CONTAINERS_CONF")"
  printf '%s\n' "$CONTAINERS_CONF_TEXT" >"$CONTAINERS_CONF"
  note "wrote $CONTAINERS_CONF"
fi
bash "$REPO_ROOT/scripts/base_image.sh"
# Debian 11 with sshd: the other distribution of the portable agent's tests.
bash "$REPO_ROOT/scripts/bullseye_image.sh"

step "Done in ${SECONDS}s"
