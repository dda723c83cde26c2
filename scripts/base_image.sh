#!/usr/bin/env bash
# Builds the local base image that `--image default-cpu` and the Dockerfile
# of `yard init` start FROM: localhost/trainyard/base-cpu, Debian minbase
# with python3 and pip (docs/workflow.md, "Images"). No registry is needed:
# the root filesystem comes from this machine's own Debian mirror through
# mmdebstrap and is turned into an image with `podman import`
# (scripts/lib/debian_image.sh).
#
# Idempotent: does nothing when the image exists with this script's
# BASE_VERSION; installs nothing (scripts/setup.sh installs podman and
# mmdebstrap and runs this). Needs root (mmdebstrap's root mode).
#
#   bash scripts/base_image.sh           # build if missing or outdated
#   bash scripts/base_image.sh --force   # build again
#   YARD_BASE_MIRROR=http://host/debian bash scripts/base_image.sh
set -euo pipefail
SCRIPT=base_image.sh
. "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib/debian_image.sh"

IMAGE=localhost/trainyard/base-cpu:latest
# Bump when the package list or the image's settings change: an image of
# another version is rebuilt.
BASE_VERSION=2
PACKAGES=python3,python3-pip,python3-yaml,ca-certificates
# Certificate authorities this machine added (a proxy's, a company's): the
# image trusts them too, so pip inside reaches what the machine reaches.
LOCAL_CAS=/usr/local/share/ca-certificates

debian_image_start "$@"

# EXTERNALLY-MANAGED goes: in an image, `pip install` into the system Python
# is the point (PEP 668 would refuse).
EXTRA_MMDEBSTRAP=(--customize-hook='rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED')
EXTRA_IMPORT=(--change 'ENV LANG=C.UTF-8')
version="$BASE_VERSION"
if compgen -G "$LOCAL_CAS/*.crt" >/dev/null; then
  EXTRA_MMDEBSTRAP+=(--customize-hook="copy-in $LOCAL_CAS /usr/local/share"
    --customize-hook='chroot "$1" update-ca-certificates >/dev/null 2>&1')
  # Other local authorities make another image.
  version="$BASE_VERSION-$(cat "$LOCAL_CAS"/*.crt | sha256sum | cut -c1-12)"
fi
debian_image_current "$IMAGE" org.trainyard.base-version "$version" && exit 0

# The suite this machine runs, from the mirrors apt already uses for it.
. /etc/os-release
suite="${VERSION_CODENAME:?no VERSION_CODENAME in /etc/os-release}"
sources=()
if [[ -n "${YARD_BASE_MIRROR:-}" ]]; then
  sources=("deb $YARD_BASE_MIRROR $suite main")
else
  while read -r uri release; do
    sources+=("deb $uri $release main")
  done < <(debian_mirrors "$suite")
fi
((${#sources[@]} > 0)) || die "no Debian mirror for $suite in apt's sources: set YARD_BASE_MIRROR=http://.../debian"

debian_image_build "$IMAGE" org.trainyard.base-version "$version" "$suite" "$PACKAGES" \
  "trainyard default-cpu base: Debian $suite minbase + $PACKAGES" "${sources[@]}"
