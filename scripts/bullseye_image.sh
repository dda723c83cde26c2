#!/usr/bin/env bash
# Builds localhost/trainyard/bullseye-sshd, the "other distribution" of the
# tests of the portable agent (tests/e2e/test_portable_agent.py, and the AWS
# tunnel mode's): Debian 11 minbase (glibc 2.31, OpenSSL 1.1, none of the
# libraries `yard` links on this Debian 12 machine) plus openssh-server, so
# that a test can reach it like a cloud instance and copy the agent there.
# From Debian's archive through mmdebstrap, imported with `podman import`,
# like scripts/base_image.sh's image (scripts/lib/debian_image.sh).
#
# Idempotent: does nothing when the image exists with this script's
# IMAGE_VERSION. Needs root; installs nothing (scripts/setup.sh installs
# podman and mmdebstrap and runs this).
#
#   bash scripts/bullseye_image.sh           # build if missing or outdated
#   bash scripts/bullseye_image.sh --force   # build again
#   YARD_BULLSEYE_MIRROR=http://host/debian bash scripts/bullseye_image.sh
set -euo pipefail
SCRIPT=bullseye_image.sh
. "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib/debian_image.sh"

IMAGE=localhost/trainyard/bullseye-sshd:latest
# Bump when the package list or the image's settings change.
IMAGE_VERSION=1
SUITE=bullseye
PACKAGES=openssh-server

debian_image_start "$@"
debian_image_current "$IMAGE" org.trainyard.image-version "$IMAGE_VERSION" && exit 0

# Debian's archive as apt already reaches it for this machine's own suite.
mirror="${YARD_BULLSEYE_MIRROR:-}"
if [[ -z "$mirror" ]]; then
  . /etc/os-release
  mirror="$(debian_mirrors "${VERSION_CODENAME:-}" | awk -v s="${VERSION_CODENAME:-}" '$2 == s { print $1; exit }')"
fi
[[ -n "$mirror" ]] || die "no Debian mirror in apt's sources: set YARD_BULLSEYE_MIRROR=http://.../debian"

# Debian 12's debian-archive-keyring holds Debian 11's keys; mmdebstrap uses
# apt's trusted keys. No host keys: each test makes its own.
EXTRA_MMDEBSTRAP=(--customize-hook='rm -f "$1"/etc/ssh/ssh_host_*')
EXTRA_IMPORT=()
debian_image_build "$IMAGE" org.trainyard.image-version "$IMAGE_VERSION" "$SUITE" "$PACKAGES" \
  "trainyard test image: Debian $SUITE minbase + $PACKAGES" "deb $mirror $SUITE main"
