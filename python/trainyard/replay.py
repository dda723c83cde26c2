"""`python -m trainyard.replay ARCHIVE [--machines M] [--tolerance T] [--json]`:
the same as `yard replay` (src/sdk/replay.h), which it runs, for scripts
that call it this way. A Keras job replays with this interpreter
(YARD_PYTHON) unless TRAINYARD_PYTHON or YARD_PYTHON says otherwise.

Exit status: 0 when the replayed job succeeded and every final metric is
within the tolerance, 1 when they differ or the job failed, 2 for a bad
archive."""
import os
import subprocess
import sys
from typing import List, Optional

from trainyard._native import yard_binary


def main(argv: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    env = dict(os.environ)
    env.setdefault("YARD_PYTHON", sys.executable)
    return subprocess.call([yard_binary(), "replay", *args], env=env)


if __name__ == "__main__":
    sys.exit(main())
