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
    db = README.parent / "experiments" / "results" / "quick" / "runs.sqlite"
    if not db.exists():
        pytest.skip("no committed quick-profile results")
    text = " ".join(README.read_text().split())
    (minutes, runs, commit) = re.findall(r"the committed run took ([0-9.]+) minutes of wall time "
                                         r"for its (\d+) runs .*? at gnpool commit (\w+)", text)[0]
    with sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True) as conn:
        start, end, count = conn.execute(
            "SELECT min(started_at), max(finished_at), count(*) FROM runs").fetchone()
        commits = {r[0] for r in conn.execute(
            "SELECT json_extract(versions, '$.gnpool_commit') FROM runs")}
    conn.close()
    wall = datetime.fromisoformat(end) - datetime.fromisoformat(start)
    assert f"{wall.total_seconds() / 60:.1f}" == minutes and int(runs) == count
    assert {c[:len(commit)] for c in commits} == {commit}
