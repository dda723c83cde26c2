# Shared by scripts/base_image.sh and scripts/bullseye_image.sh (sourced,
# not run): both build a Debian minbase image from Debian's archive with
# mmdebstrap and stream it into `podman import` (no registry, no tarball on
# disk). Each script sets what differs (image, suite, packages, hooks,
# sources); this file holds the steps they share.
#
# Contract: the caller sets SCRIPT (its name, for messages) before calling
# anything here, and runs under `set -euo pipefail`.

die() { printf '%s: error: %s\n' "$SCRIPT" "$*" >&2; exit 1; }
note() { printf '    %s\n' "$*"; }

# Reads the script's arguments (only --force) into FORCE, and checks the
# tools are there.
debian_image_start() {
  FORCE=0
  case "${1:-}" in
    --force) FORCE=1 ;;
    "") ;;
    *) die "unknown argument '$1' (usage: $SCRIPT [--force])" ;;
  esac
  command -v podman >/dev/null || die "podman is not installed (scripts/setup.sh installs it)"
  command -v mmdebstrap >/dev/null || die "mmdebstrap is not installed (scripts/setup.sh installs it)"
}

# debian_image_current IMAGE LABEL VERSION: true (and says so) when IMAGE
# exists with LABEL=VERSION and --force was not given.
debian_image_current() {
  local have
  have="$(podman image inspect --format "{{index .Labels \"$2\"}}" "$1" 2>/dev/null || true)"
  if ((FORCE == 0)) && [[ "$have" == "$3" ]]; then
    note "$1 (version $3) exists; keeping it"
    return 0
  fi
  [[ "$(id -u)" -eq 0 ]] || die "building $1 needs root (mmdebstrap root mode)"
  return 1
}

# debian_mirrors SUITE: "URI RELEASE" lines, one per Debian archive apt
# already uses for SUITE's main component (the suite itself, -updates,
# -security), whatever the sources' format.
debian_mirrors() {
  apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(COMPONENT)' 'Created-By: Packages' |
    awk -v s="$1" '$3 == "main" && ($2 == s || $2 == s "-updates" || $2 == s "-security") { print $1, $2 }' |
    sort -u
}

# debian_image_build IMAGE LABEL VERSION SUITE PACKAGES MESSAGE SOURCE...
# Builds IMAGE (Debian SUITE minbase + PACKAGES, without documentation, man
# pages and translations) from the apt SOURCE lines, labelled LABEL=VERSION.
# Extra mmdebstrap options come from the array EXTRA_MMDEBSTRAP, extra
# `podman import` options from EXTRA_IMPORT (both may be unset).
debian_image_build() {
  local image="$1" label="$2" version="$3" suite="$4" packages="$5" message="$6"
  shift 6
  note "building $image from: $*"
  local start=$SECONDS
  mmdebstrap --quiet --variant=minbase --include="$packages" \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' --aptopt='Acquire::Languages "none"' \
    "${EXTRA_MMDEBSTRAP[@]}" "$suite" - "$@" |
    podman import --quiet \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'CMD ["/bin/bash"]' \
      --change "LABEL $label=$version" "${EXTRA_IMPORT[@]}" \
      --message "$message" \
      - "$image" >/dev/null
  note "built $image in $((SECONDS - start)) s ($(podman image inspect --format '{{.Size}}' "$image") bytes)"
}
