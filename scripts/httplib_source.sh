#!/usr/bin/env bash
# Prints a folder holding httplib.h and httplib.cc: Debian's own source of
# the installed cpp-httplib (same version, Debian's patches applied), split
# as Debian's build splits it. CMakeLists.txt compiles it into yard_httplib,
# which every target links (256 KiB body reads instead of Debian's 4 KiB)
# and the portable `yard` needs (docs/operations.md, "The portable agent"):
# Debian ships cpp-httplib only as a shared library.
#
# The source comes with `apt-get source` from the mirrors apt already uses
# for this machine's suite (deb-src of the same URIs), through a private apt
# state folder: the machine's own apt configuration is not changed. Cached
# under $YARD_DEB_SRC_CACHE (default /var/cache/trainyard/deb-src), one
# folder per version, so every work tree of this machine shares one copy.
#
# Idempotent; prints nothing but the folder on stdout (notes go to stderr).
#   bash scripts/httplib_source.sh
set -euo pipefail

CACHE="${YARD_DEB_SRC_CACHE:-/var/cache/trainyard/deb-src}"
PACKAGE=libcpp-httplib-dev
SOURCE=cpp-httplib

die() { printf 'httplib_source.sh: error: %s\n' "$*" >&2; exit 1; }
note() { printf '    %s\n' "$*" >&2; }

version="$(dpkg-query -W -f='${Version}' "$PACKAGE" 2>/dev/null)" ||
  die "$PACKAGE is not installed (scripts/setup.sh installs it)"
out="$CACHE/$SOURCE-$version"
if [[ -f "$out/split/httplib.cc" ]] && cmp -s "$out/split/httplib.h" /usr/include/httplib.h; then
  printf '%s\n' "$out/split"
  exit 0
fi

command -v python3 >/dev/null || die "python3 is needed to split httplib.h (split.py)"
command -v dpkg-source >/dev/null || die "dpkg-source is needed to unpack the source (Debian: dpkg-dev)"
rm -rf "$out"
mkdir -p "$out/apt/lists/partial" "$out/apt/parts" "$out/get"

# deb-src lines for the URIs and suites apt uses for this machine's packages.
. /etc/os-release
suite="${VERSION_CODENAME:?no VERSION_CODENAME in /etc/os-release}"
apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(COMPONENT)' 'Created-By: Packages' |
  awk -v s="$suite" '$3 == "main" && ($2 == s || $2 == s "-updates" || $2 == s "-security") {
    print "deb-src " $1 " " $2 " main" }' | sort -u >"$out/apt/parts/src.list"
[[ -s "$out/apt/parts/src.list" ]] || die "no Debian mirror for $suite in apt's sources"

apt_private=(-q -o "Dir::Etc::SourceList=$out/apt/parts/src.list" -o "Dir::Etc::SourceParts=$out/apt/none"
  -o "Dir::State::Lists=$out/apt/lists" -o "Dir::Cache=$out/apt/cache" -o APT::Sandbox::User=root)
note "fetching Debian's source of $SOURCE $version"
apt-get "${apt_private[@]}" update >&2 || die "apt-get update of the deb-src lists failed"
(cd "$out/get" && apt-get "${apt_private[@]}" source "$SOURCE=$version" >&2) ||
  die "apt-get source $SOURCE=$version failed"
src="$(find "$out/get" -mindepth 1 -maxdepth 1 -type d -name "$SOURCE-*" | head -1)"
[[ -n "$src" && -f "$src/split.py" ]] || die "the unpacked source has no split.py"
# split.py reads the httplib.h beside itself (it uses dirname(argv[0])).
python3 "$(readlink -f "$src/split.py")" --out "$out/split" >&2
cmp -s "$out/split/httplib.h" /usr/include/httplib.h ||
  die "the split httplib.h differs from the installed /usr/include/httplib.h"
rm -rf "$out/apt" "$out/get"
printf '%s\n' "$out/split"
