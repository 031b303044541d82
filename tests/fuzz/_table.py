"""The README's bad-input tables, generated from the regression corpus and the fuzz settings.

    python -m tests.fuzz._table          # prints the block that goes between the README's markers

tests/fuzz/test_corpus.py fails when the README's block differs from this output.
"""

from __future__ import annotations

import re

from tests.fuzz import test_fuzz_cli, test_parsers
from tests.fuzz._cases import ALL, CASES, ONE, Case

MARKERS = ("<!-- bad-input-table -->", "<!-- /bad-input-table -->")

#: category -> (what the fuzz suite generates for it, examples per CI run)
GENERATED = {
    "log files and entries": ("JSONL / Parquet / NPZ files, valid entries with 0-2 mutations, `feedback import`",
                              3 * test_fuzz_cli.DEFAULT_EXAMPLES),
    "command-line options": ("option vectors for `run`, `plan`, `eval`", 3 * test_fuzz_cli.DEFAULT_EXAMPLES),
    "feedback add": ("argument vectors, `--vector-file`s of any dtype and shape", 3 * test_fuzz_cli.DEFAULT_EXAMPLES),
}
IN_PROCESS = {
    "store URIs": "URIs, parsed in-process",
    "config files": "TOML and random bytes, loaded in-process",
    "log files and entries": "JSON lines and random bytes as log files, and entries for the rule, in-process",
}


def _runs(case: Case) -> int:
    return len(ALL) if case.backends == ALL else 1


def _codes(case: Case) -> str:
    per = {b: case.code_on(b) for b in (ALL if case.backends == ONE else case.backends)}
    if len(set(per.values())) == 1:
        return str(case.code)
    return ", ".join(f"{code} on {', '.join(b for b in per if per[b] == code)}" for code in sorted(set(per.values())))


def _readable(pattern: str) -> str:
    text = pattern.split("|")[-1] if "|" in pattern else pattern
    text = re.sub(r"\.\*", " … ", text)
    text = re.sub(r"\\(.)", r"\1", text)
    return " ".join(text.split()).replace("|", "\\|")


def table() -> str:
    cats = list(dict.fromkeys(c.category for c in CASES))
    lines = [MARKERS[0], "",
             "| category | regression inputs (runs) | generated per CI run | exit codes |",
             "|---|---|---|---|"]
    parsers = test_parsers.FAST.max_examples
    for cat in cats:
        cases = [c for c in CASES if c.category == cat]
        codes = sorted({c.code_on(b) for c in cases for b in (ALL if c.backends == ONE else c.backends)})
        generated = []
        if cat in GENERATED:
            what, n = GENERATED[cat]
            generated.append(f"{n} processes: {what}")
        if cat in IN_PROCESS:
            generated.append(f"{parsers}+ {IN_PROCESS[cat]}")
        lines.append(f"| {cat} | {len(cases)} ({sum(_runs(c) for c in cases)}) | {'; '.join(generated) or '–'} | "
                     f"{', '.join(map(str, codes))} |")
    lines += ["", "| input | exit code | message (excerpt) |", "|---|---|---|"]
    for case in CASES:
        lines.append(f"| {case.label.replace('|', chr(92) + '|')} | {_codes(case)} | {_readable(case.message)} |")
    lines += ["", MARKERS[1]]
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
