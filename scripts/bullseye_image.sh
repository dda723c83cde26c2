#!/usr/bin/env bash
# Builds localhost/trainyard/bullseye-sshd, the "other distribution" of the
# tests of the portable agent (tests/e2e/test_portable_agent.py, and the AWS
# tunnel mode's): Debian 11 minbase (glibc 2.31, OpenSSL 1.1, none of the
# libraries `yard` links on this Debian 12 machine) plus openssh-server, so
# that a test can reach it like a cloud instance and copy the agent there.
# From Debian's archive through mmdebstrap, imported with `podman import`,
# like scripts/base_image.sh's image.
#
# Idempotent: does nothing when the image exists with this script's
# IMAGE_VERSION. Needs root; installs nothing (scripts/setup.sh installs
# podman and mmdebstrap and runs this).
#
#   bash scripts/bullseye_image.sh           # build if missing or outdated
#   bash scripts/bullseye_image.sh --force   # build again
#   YARD_BULLSEYE_MIRROR=http://host/debian bash scripts/bullseye_image.sh
set -euo pipefail

IMAGE=localhost/trainyard/bullseye-sshd:latest
# Bump when the package list or the image's settings change.
IMAGE_VERSION=1
SUITE=bullseye
PACKAGES=openssh-server

die() { printf 'bullseye_image.sh: error: %s\n' "$*" >&2; exit 1; }
note() { printf '    %s\n' "$*"; }

force=0
case "${1:-}" in
  --force) force=1 ;;
  "") ;;
  *) die "unknown argument '$1' (usage: bullseye_image.sh [--force])" ;;
esac
command -v podman >/dev/null || die "podman is not installed (scripts/setup.sh installs it)"
command -v mmdebstrap >/dev/null || die "mmdebstrap is not installed (scripts/setup.sh installs it)"

have="$(podman image inspect --format '{{index .Labels "org.trainyard.image-version"}}' "$IMAGE" 2>/dev/null || true)"
if ((force == 0)) && [[ "$have" == "$IMAGE_VERSION" ]]; then
  note "$IMAGE (version $IMAGE_VERSION) exists; keeping it"
  exit 0
fi
[[ "$(id -u)" -eq 0 ]] || die "building $IMAGE needs root (mmdebstrap root mode)"

# Debian's archive as apt already reaches it for this machine's own suite.
mirror="${YARD_BULLSEYE_MIRROR:-}"
if [[ -z "$mirror" ]]; then
  . /etc/os-release
  mirror="$(apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(COMPONENT)' 'Created-By: Packages' |
    awk -v s="${VERSION_CODENAME:-}" '$2 == s && $3 == "main" { print $1; exit }')"
fi
[[ -n "$mirror" ]] || die "no Debian mirror in apt's sources: set YARD_BULLSEYE_MIRROR=http://.../debian"
note "building $IMAGE from $mirror $SUITE"

# Debian 12's debian-archive-keyring holds Debian 11's keys; mmdebstrap uses
# apt's trusted keys. No host keys: each test makes its own.
start=$SECONDS
mmdebstrap --quiet --variant=minbase --include="$PACKAGES" \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' --aptopt='Acquire::Languages "none"' \
  --customize-hook='rm -f "$1"/etc/ssh/ssh_host_*' \
  "$SUITE" - "deb $mirror $SUITE main" |
  podman import --quiet \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' \
    --change "LABEL org.trainyard.image-version=$IMAGE_VERSION" \
    --message "trainyard test image: Debian $SUITE minbase + $PACKAGES" \
    - "$IMAGE" >/dev/null
note "built $IMAGE in $((SECONDS - start)) s ($(podman image inspect --format '{{.Size}}' "$IMAGE") bytes)"
