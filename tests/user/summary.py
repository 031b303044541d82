"""Render the user-level suite's counted trials as a Markdown table (the README's summary).

    python -m tests.user.summary [TRIALS_JSONL] [--readme README.md]

Without a path it reads the newest ``user-suite-trials.jsonl`` under pytest's temp root; with
``--readme`` it also replaces the table between ``<!-- user-suite-summary -->`` markers.
"""

from __future__ import annotations

import argparse
import getpass
import json
import re
import sys
import tempfile
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tests.user._tally import TRIALS_FILE

#: table columns: (heading, categories counted in it)
COLUMNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("CLI sequences", ("sequence",)),
    ("SIGKILL `run`", ("sigkill-run",)),
    ("SIGKILL `rollback`", ("sigkill-rollback",)),
    ("server killed / stopped / down", ("server-fault",)),
    ("concurrent runs and writers", ("concurrent-runs", "app-writer", "free-writer", "conditional-write")),
    ("secrets scans", ("secrets",)),
)
BACKENDS = ("qdrant-local", "milvus-lite", "milvus-lite-server", "milvus-2.3.5", "chroma-persistent", "chroma-http")
MARKERS = ("<!-- user-suite-summary -->", "<!-- /user-suite-summary -->")


def load(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def render(records: Iterable[dict[str, Any]]) -> str:
    """One row per backend: trials per column (faults injected, failures), then the totals."""
    records = list(records)
    cells: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])  # trials, faults, failures
    phases: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    sweeps = set()
    costs = [r for r in records if r["category"] == "cost"]
    for r in records:
        column = next((head for head, cats in COLUMNS if r["category"] in cats), None)
        if column is None:
            continue
        cell = cells[(r["backend"], column)]
        cell[0] += 1
        cell[1] += bool(r.get("fault"))
        cell[2] += not r["ok"]
        if r.get("fault") and r.get("phase"):
            phases[r["backend"]][r["phase"]] += 1
        sweeps.add(r.get("sweep", "ci"))
    backends = [b for b in BACKENDS if any((b, c) in cells for c, _ in COLUMNS)]
    backends += sorted({b for b, _ in cells} - set(backends))
    head = "| backend | " + " | ".join(c for c, _ in COLUMNS) + " | trials | faults | failures | kills by phase |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 5)]
    totals = [0, 0, 0]
    for b in backends:
        row = [b]
        sums = [0, 0, 0]
        for column, _ in COLUMNS:
            t, f, x = cells.get((b, column), (0, 0, 0))
            row.append(_cell(t, f, x))
            sums = [s + v for s, v in zip(sums, (t, f, x))]
        totals = [s + v for s, v in zip(totals, sums)]
        by_phase = ", ".join(f"{p} {n}" for p, n in sorted(phases[b].items())) or "–"
        row += [str(sums[0]), str(sums[1]), str(sums[2]), by_phase]
        lines.append("| " + " | ".join(row) + " |")
    lines.append(f"| **all** | {' | '.join('' for _ in COLUMNS)} | **{totals[0]}** | **{totals[1]}** | "
                 f"**{totals[2]}** | |")
    lines.append("")
    lines.append(f"Cells: trials (faults injected; failures when any). Sweep: {', '.join(sorted(sweeps)) or '-'}.")
    failed = [r for r in records if r["category"] != "cost" and not r["ok"]]
    for r in failed:
        lines.append(f"Failed: {r['backend']}, {r['category']}{', ' + r['fault'] if r.get('fault') else ''}: "
                     f"{gist(r.get('detail') or '')}")
    if costs:
        lines.append(f"Cost: {len(costs)} tests ran {sum(c['processes'] for c in costs)} `nudge-sync` processes "
                     f"using {sum(c['cpu_s'] for c in costs):.0f} CPU-seconds; the tests' wall times add up to "
                     f"{sum(c['wall_s'] for c in costs):.0f} s.")
    return "\n".join(lines)


def gist(detail: str, width: int = 220) -> str:
    """A failed trial in one line: what was expected, the command's exit, and its error message."""
    head = detail.split("\n")[0].split("`--json")[0].split("`")[0].strip(" :|")
    ended = re.search(r"\` (exited -?\d+) after|(still running after \d+s)", detail)
    error = re.search(r'"error": "((?:[^"\\]|\\.)*)"', detail)
    parts = [head, (ended.group(1) or ended.group(2)) if ended else "", error.group(1) if error else ""]
    return " ".join("; ".join(p for p in parts if p).split())[:width]


def _cell(trials: int, faults: int, failures: int) -> str:
    if not trials:
        return "–"
    out = f"{trials}" + (f" ({faults})" if faults else "")
    return out + (f" **{failures} failed**" if failures else "")


def replace_in_readme(readme: Path, table: str) -> None:
    text = readme.read_text()
    pattern = re.compile(re.escape(MARKERS[0]) + r".*?" + re.escape(MARKERS[1]), re.S)
    if not pattern.search(text):
        raise SystemExit(f"{readme} has no {MARKERS[0]} ... {MARKERS[1]} block")
    readme.write_text(pattern.sub(lambda _: f"{MARKERS[0]}\n{table}\n{MARKERS[1]}", text))


def newest_trials_file() -> Path | None:
    root = Path(tempfile.gettempdir()) / f"pytest-of-{getpass.getuser()}"
    found = sorted(root.glob(f"pytest-*/{TRIALS_FILE}"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.user.summary", description=__doc__.splitlines()[0])
    parser.add_argument("trials", nargs="?", type=Path, help=f"a {TRIALS_FILE} (default: the newest)")
    parser.add_argument("--readme", type=Path, help="replace the table in this README")
    args = parser.parse_args(argv)
    path = args.trials or newest_trials_file()
    if path is None or not path.exists():
        print(f"no {TRIALS_FILE} found: run the suite first (python -m pytest -n 2)", file=sys.stderr)
        return 2
    table = render(load(path))
    print(table)
    if args.readme:
        replace_in_readme(args.readme, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
