#!/usr/bin/env bash
# Clang's thread-safety analysis (-Wthread-safety) over the C++ sources of
# the given folders (or files), using the build's compile_commands.json for the flags:
# syntax only, two files at a time. Prints each finding and exits non-zero
# if there is any. The annotations are in src/common/thread_annotations.h.
#
#   bash scripts/thread_safety.sh                  # the folders checked in CI
#   bash scripts/thread_safety.sh src/sdk          # others
#
# Needs clang++-14 (scripts/setup.sh installs it) and a configured build/.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)"
cd "$REPO_ROOT"

# Folders (or files) whose code is annotated and clean. Add one once it is.
# src/trainer's others and the two SDK files that include libtorch are not
# checked: clang-14 cannot parse Debian's libtorch headers.
CHECKED=(src/common src/store src/server src/providers src/agent src/client src/aws src/cli src/sdk
         src/shim src/trainer/worker_pool.cc python/src)
SKIPPED=(src/sdk/online_fit.cc src/sdk/online_fit_test.cc)

CLANG="${CLANG:-clang++-14}"
DB="${BUILD_DIR:-build}/compile_commands.json"
command -v "$CLANG" >/dev/null || { echo "thread_safety.sh: $CLANG not found: run scripts/setup.sh (it installs clang-14)" >&2; exit 2; }
[[ -f "$DB" ]] || { echo "thread_safety.sh: $DB not found: configure the build first (scripts/setup.sh)" >&2; exit 2; }
(($# > 0)) && CHECKED=("$@")

# One line per file: the compile command turned into a clang syntax check
# (GCC's output and warning flags dropped; only the analysis is asked for).
commands="$(SKIPPED="${SKIPPED[*]}" python3 - "$DB" "$REPO_ROOT" "$CLANG" "${CHECKED[@]}" <<'PY'
import json, os, shlex, sys
db, root, clang, dirs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
prefixes = [f"{root}/{d.rstrip('/')}" for d in dirs]
skipped = {f"{root}/{f}" for f in os.environ.get("SKIPPED", "").split()}
seen = set()
for e in json.load(open(db)):
    f = e["file"]
    if f in seen or f in skipped or not any(f == p or f.startswith(p + "/") for p in prefixes):
        continue
    seen.add(f)
    args = shlex.split(e["command"])[1:]
    out, skip = [clang], False
    for a in args:
        if skip:
            skip = False
        elif a in ("-o", "-c", "-include"):
            skip = True
        elif a.startswith("-W") or a == f or a.startswith("-g") or a.startswith("-O"):
            pass
        else:
            out.append(a)
    out += ["-fsyntax-only", "-Wno-everything", "-Wthread-safety", "-Werror=thread-safety", "-ferror-limit=0", f]
    print(shlex.join(out))
PY
)"
[[ -n "$commands" ]] || { echo "thread_safety.sh: no sources under ${CHECKED[*]} in $DB" >&2; exit 2; }
n="$(wc -l <<<"$commands")"
rc=0
# xargs exits 123 when any command failed; each prints its own findings.
tr '\n' '\0' <<<"$commands" | xargs -0 -P2 -n1 bash -c 'eval "$1"' _ || rc=$?
if ((rc == 0)); then
  echo "thread_safety.sh: $n files under ${CHECKED[*]}: no findings"
else
  echo "thread_safety.sh: findings above (in $n files under ${CHECKED[*]}); annotate or fix: src/common/thread_annotations.h" >&2
  exit 1
fi
