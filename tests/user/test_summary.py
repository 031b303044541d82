"""The README's summary table is what tests/user/summary.py renders from counted trials."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.user import summary
from tests.user._tally import Tally

ROOT = Path(__file__).resolve().parents[2]


def test_trials_are_counted_per_backend_and_column(tmp_path):
    tally = Tally(tmp_path / "t.jsonl", "t", "ci")
    tally.trial("milvus-lite", "sigkill-run", True, fault="run.write@1", phase="write")
    tally.trial("milvus-lite", "sigkill-run", False, fault="run.save@1", phase="save", detail="boom")
    tally.trial("milvus-lite", "sigkill-run", True)  # a convergence check: a trial, not a fault
    tally.trial("chroma-http", "free-writer", True, fault="application write")
    tally.cost(3, 2.5, 4.0)
    table = summary.render(summary.load(tmp_path / "t.jsonl"))
    rows = {line.split(" | ")[0].strip("| "): line for line in table.splitlines() if line.startswith("| ")}
    assert "| 3 (2) **1 failed** |" in rows["milvus-lite"] and rows["milvus-lite"].endswith("| 3 | 2 | 1 | save 1, write 1 |")
    assert rows["chroma-http"].count("| 1 (1) |") == 1
    assert "**4** | **3** | **1**" in rows["**all**"]
    assert tally.failures == ["milvus-lite sigkill-run run.save@1: boom"]
    assert "3 `nudge-sync` processes using 2 CPU-seconds" in table  # rounds half to even


def test_the_readme_holds_a_rendered_table_with_the_current_columns():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- user-suite-summary -->\n(.*?)<!-- /user-suite-summary -->", readme, re.S)
    assert block, "README has no user-suite-summary block"
    header = summary.render([]).splitlines()[0]
    assert block.group(1).startswith(header + "\n"), "the README's table is not the one summary.py renders"


def test_readme_update_replaces_only_the_block(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("before\n<!-- user-suite-summary -->\nold\n<!-- /user-suite-summary -->\nafter\n")
    summary.replace_in_readme(readme, "NEW")
    assert readme.read_text() == "before\n<!-- user-suite-summary -->\nNEW\n<!-- /user-suite-summary -->\nafter\n"
    (tmp_path / "t.jsonl").write_text(json.dumps({"backend": "qdrant-local", "category": "sequence", "ok": True}) + "\n")
    assert summary.main([str(tmp_path / "t.jsonl"), "--readme", str(readme)]) == 0
    assert "| qdrant-local | 1 |" in readme.read_text()


def test_a_failure_is_summed_up_in_one_line():
    detail = ('a run that lost its server mid-write must exit 7\n`--json -q run --store x` exited 6 after 2.0s\n'
              '--- stdout ---\n{\n  "error": "gave up after 5 attempts: lost \\"server\\"",\n  "exit_code": 6\n}')
    assert summary.gist(detail) == 'a run that lost its server mid-write must exit 7; exited 6; gave up after 5 ' \
                                   'attempts: lost \\"server\\"'
    assert summary.gist("`--json -q run --store y` still running after 300s:\n") == "still running after 300s"
