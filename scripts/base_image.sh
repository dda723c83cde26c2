#!/usr/bin/env bash
# Builds the local base image that `--image default-cpu` and the Dockerfile
# of `yard init` start FROM: localhost/trainyard/base-cpu, Debian minbase
# with python3 and pip (docs/workflow.md, "Images"). No registry is needed:
# the root filesystem comes from this machine's own Debian mirror through
# mmdebstrap and is turned into an image with `podman import`.
#
# Idempotent: does nothing when the image exists with this script's
# BASE_VERSION; installs nothing (scripts/setup.sh installs podman and
# mmdebstrap and runs this). Needs root (mmdebstrap's root mode).
#
#   bash scripts/base_image.sh           # build if missing or outdated
#   bash scripts/base_image.sh --force   # build again
#   YARD_BASE_MIRROR=http://host/debian bash scripts/base_image.sh
set -euo pipefail

IMAGE=localhost/trainyard/base-cpu:latest
# Bump when the package list or the image's settings change: an image of
# another version is rebuilt.
BASE_VERSION=2
PACKAGES=python3,python3-pip,python3-yaml,ca-certificates
# Certificate authorities this machine added (a proxy's, a company's): the
# image trusts them too, so pip inside reaches what the machine reaches.
LOCAL_CAS=/usr/local/share/ca-certificates

die() { printf 'base_image.sh: error: %s\n' "$*" >&2; exit 1; }
note() { printf '    %s\n' "$*"; }

force=0
case "${1:-}" in
  --force) force=1 ;;
  "") ;;
  *) die "unknown argument '$1' (usage: base_image.sh [--force])" ;;
esac

command -v podman >/dev/null || die "podman is not installed (scripts/setup.sh installs it)"
command -v mmdebstrap >/dev/null || die "mmdebstrap is not installed (scripts/setup.sh installs it)"

ca_hooks=()
version="$BASE_VERSION"
if compgen -G "$LOCAL_CAS/*.crt" >/dev/null; then
  ca_hooks=(--customize-hook="copy-in $LOCAL_CAS /usr/local/share"
    --customize-hook='chroot "$1" update-ca-certificates >/dev/null 2>&1')
  # Other local authorities make another image.
  version="$BASE_VERSION-$(cat "$LOCAL_CAS"/*.crt | sha256sum | cut -c1-12)"
fi

have="$(podman image inspect --format '{{index .Labels "org.trainyard.base-version"}}' "$IMAGE" 2>/dev/null || true)"
if ((force == 0)) && [[ "$have" == "$version" ]]; then
  note "$IMAGE (version $version) exists; keeping it"
  exit 0
fi
[[ "$(id -u)" -eq 0 ]] || die "building the base image needs root (mmdebstrap root mode)"

# The suite this machine runs and the mirrors apt already uses for it
# (main, -updates, -security), whatever the sources' format.
. /etc/os-release
suite="${VERSION_CODENAME:?no VERSION_CODENAME in /etc/os-release}"
sources=()
if [[ -n "${YARD_BASE_MIRROR:-}" ]]; then
  sources=("deb $YARD_BASE_MIRROR $suite main")
else
  while read -r uri release; do
    sources+=("deb $uri $release main")
  done < <(apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(COMPONENT)' 'Created-By: Packages' |
    awk -v s="$suite" '$3 == "main" && ($2 == s || $2 == s "-updates" || $2 == s "-security") { print $1, $2 }' |
    sort -u)
fi
((${#sources[@]} > 0)) || die "no Debian mirror for $suite in apt's sources: set YARD_BASE_MIRROR=http://.../debian"
note "building $IMAGE from: ${sources[*]}"

# Streamed into `podman import`: no tarball on disk. Documentation, man
# pages and translations are left out. EXTERNALLY-MANAGED goes: in an image,
# `pip install` into the system Python is the point (PEP 668 would refuse).
start=$SECONDS
mmdebstrap --quiet --variant=minbase --include="$PACKAGES" \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' --aptopt='Acquire::Languages "none"' \
  --customize-hook='rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED' "${ca_hooks[@]}" \
  "$suite" - "${sources[@]}" |
  podman import --quiet \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    --change "LABEL org.trainyard.base-version=$version" \
    --message "trainyard default-cpu base: Debian $suite minbase + $PACKAGES" \
    - "$IMAGE" >/dev/null
note "built $IMAGE in $((SECONDS - start)) s ($(podman image inspect --format '{{.Size}}' "$IMAGE") bytes)"
