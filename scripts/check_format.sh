#!/usr/bin/env bash
# Checks that every C++ file git tracks under src/, bench/ and fuzz/ is
# formatted as .clang-format says, by clang-format-14 (Debian 12's; other
# versions format differently). Lists the files that are not and the command
# that formats them.
#
#   bash scripts/check_format.sh            # exit 1 if any file is not formatted
#   bash scripts/check_format.sh --report   # list them, but exit 0
#   bash scripts/check_format.sh --fix      # format them all in place
#
# Needs clang-format-14 (scripts/setup.sh installs it).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)"
cd "$REPO_ROOT"

CLANG_FORMAT="${CLANG_FORMAT:-clang-format-14}"
mode="${1:-check}"
case "$mode" in
  check | --report | --fix) ;;
  *) echo "check_format.sh: unknown argument '$mode' (give nothing, --report or --fix)" >&2; exit 2 ;;
esac
command -v "$CLANG_FORMAT" >/dev/null ||
  { echo "check_format.sh: $CLANG_FORMAT not found: run scripts/setup.sh (it installs clang-format-14)" >&2; exit 2; }

files() { git ls-files -z -- 'src/*.cc' 'src/*.h' 'bench/*.cc' 'bench/*.h' 'fuzz/*.cc' 'fuzz/*.h'; }
n="$(files | tr -cd '\0' | wc -c)"
FIX_COMMAND="bash scripts/check_format.sh --fix   (or: git ls-files -z -- 'src/*.cc' 'src/*.h' 'bench/*.cc' 'bench/*.h' 'fuzz/*.cc' 'fuzz/*.h' | xargs -0 $CLANG_FORMAT -i)"

if [[ "$mode" == --fix ]]; then
  files | xargs -0 -P2 -n20 "$CLANG_FORMAT" -i
  echo "check_format.sh: formatted $n files with $CLANG_FORMAT"
  exit 0
fi

# Each file clang-format would change, one a line (--dry-run -Werror fails
# for a file whose formatting differs).
offenders="$(files | xargs -0 -P2 -n1 sh -c '"$0" --dry-run -Werror "$1" >/dev/null 2>&1 || echo "$1"' "$CLANG_FORMAT" | sort)"
if [[ -z "$offenders" ]]; then
  echo "check_format.sh: $n files under src/ bench/ fuzz/: all formatted as .clang-format says"
  exit 0
fi
count="$(wc -l <<<"$offenders")"
sed 's/^/  /' <<<"$offenders"
echo "check_format.sh: $count of $n files are not formatted as .clang-format says; format them with:"
echo "  $FIX_COMMAND"
if [[ "$mode" == --report ]]; then
  echo "check_format.sh: report mode: not counted as a failure"
  exit 0
fi
exit 1
