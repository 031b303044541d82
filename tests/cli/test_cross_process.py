"""``nudge-sync`` commands as users run them, each one its own process: a reader that closes the pipe.

Every command in its own process after every other one (defect 1 of issue 10: after `demo --backend
milvus` every later command found the state collection released) is tests/user/test_sequences.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


#: the console script of this environment, as users run it
NUDGE_SYNC = str(Path(sys.executable).with_name("nudge-sync"))


def nudge_sync(*args: str, expect: int = 0) -> dict:
    done = subprocess.run([NUDGE_SYNC, "--json", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ})
    assert done.returncode == expect, (args, done.returncode, done.stderr)
    # nothing but our own messages on stderr: no third-party log line, no traceback
    assert "Traceback" not in done.stderr and "[ERROR]" not in done.stderr, done.stderr
    return json.loads(done.stdout)


def test_a_reader_that_closes_the_pipe_early_leaves_the_exit_code_alone(tmp_path):
    """Cold try: `nudge-sync history | true` and a gated `run ... | true` said 'internal error
    (a bug)', exit 1. The unread output is dropped; the command's own exit code stands."""
    # any backend: the property is the closed pipe (Chroma's demo is the quickest here)
    demo = nudge_sync("demo", "--backend", "chroma", "--dir", str(tmp_path / "d"), "--records", "300", "--dim", "16",
                      "--queries", "120")

    def piped(*args: str) -> subprocess.CompletedProcess:
        # the reader is gone before nudge-sync writes: its stdout is a pipe with no reader
        read, write = os.pipe()
        os.close(read)
        try:
            return subprocess.run([NUDGE_SYNC, *args], stdout=write, stderr=subprocess.PIPE, text=True, timeout=300)
        finally:
            os.close(write)

    for args, code in ((("history", "--store", demo["store"]), 0),
                       (("--json", "history", "--store", demo["store"]), 0),
                       (("run", "--store", demo["store"], "--dry-run", "--min-gain", "0.9"), 3)):
        done = piped(*args)
        assert done.returncode == code, (args, done.returncode, done.stderr)
        assert "internal error" not in done.stderr and "Traceback" not in done.stderr, done.stderr
