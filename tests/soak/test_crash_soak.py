"""The crash soak (soak.py) at the size the environment asks for: the CI size
by default, SOAK_FULL=1 (or SOAK_JOBS, SOAK_SERVER_KILLS, ...) for more."""
from soak import Soak, report, size_from


def test_crash_soak(tmp_path):
    size = size_from([])
    figures = Soak(size, tmp_path).run()
    summary = report(size, figures)
    print(summary)
    assert not figures.problems, summary + "\n" + "\n".join(figures.problems)
