"""Every Python example in the README runs."""

from __future__ import annotations

import ast
import re
import sqlite3
from datetime import datetime
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_examples():
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_example_runs(code):
    exec(compile(code, str(README), "exec"), {"__name__": "readme"})


def test_list_tasks_example_shows_what_the_code_returns():
    from gnpool.datasets import list_tasks

    (shown,) = re.findall(r'print\(list_tasks\("graph"\)\)\s+# (\[.*\])', README.read_text())
    assert ast.literal_eval(shown) == list_tasks("graph")


def test_quick_profile_duration_is_the_committed_databases():
    # The README names each session that made runs of the committed database: its runs,
    # its wall time (first start to last finish) and the gnpool commit they were made at.
    db = README.parent / "experiments" / "results" / "quick" / "runs.sqlite"
    if not db.exists():
        pytest.skip("no committed quick-profile results")
    text = " ".join(README.read_text().split())
    quick = text[text.index("Quick profile, `make bench`"):]
    sessions = re.findall(r"(\d+) runs \([^)]*\) in ([0-9.]+) minutes of wall time at gnpool "
                          r"commit (\w+)", quick[:2500])
    assert sessions
    with sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT started_at, finished_at, "
                            "json_extract(versions, '$.gnpool_commit') FROM runs").fetchall()
    conn.close()
    covered = 0
    for runs, minutes, commit in sessions:
        mine = [r for r in rows if r[2].startswith(commit)]
        start = min(datetime.fromisoformat(r[0]) for r in mine)
        end = max(datetime.fromisoformat(r[1]) for r in mine)
        assert f"{(end - start).total_seconds() / 60:.1f}" == minutes
        assert len(mine) == int(runs)
        covered += len(mine)
    assert covered == len(rows)
