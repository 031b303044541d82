"""Plan, review, apply (issue 19 item 6), as users meet it: every step its own ``nudge-sync``
process, every result read back with the database's own client, on Chroma persistent and Milvus
Lite (the embedded engines; apply shares the run's write path, whose server and Qdrant paths the
rest of the suite covers).

* ``plan --out`` writes nothing to the collection, and its file carries no secret (a secret planted
  in the backend's variable and in a ``secret_file=`` the URI names);
* a record the application re-embeds between plan and apply makes ``apply`` refuse (exit 4, the
  record named), and nothing is written;
* a fresh plan, applied without ``--store`` (the plan's own URI, its secret_file= dropped), writes exactly the planned
  targets, bit for bit, and nothing else (payloads checksummed unchanged); applying it again is a
  no-op (exit 3; checked on Chroma); on Milvus Lite an apply SIGKILLed after its second batch is
  completed by running it again; ``rollback`` then restores the originals bit for bit;
* after an apply, a ``run`` with the same log and options is nothing new (exit 3: the applied run
  recorded the plan's basis);
* a corrupt, truncated or edited plan file, a ``--store`` naming another collection, or a
  ``NUDGE_SYNC_STORE`` naming the same collection in another database, is refused
  with a one-line error (exit 4), no traceback, nothing written, the state not created; so is a
  plan after a run (here the apply of a later plan) was recorded, and a plan for a collection that
  now has another dimension. These read the plan file and the state's run records only, the same
  on every backend: checked on Chroma, in the same test as the rest (one collection, one log).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

from tests.backends import random_vectors
from tests.conftest import selected_harnesses
from tests.user._data import BATCH_ARGS, DIM, Collection, differing
from tests.user._native import UserBackend, checksum
from tests.user._probes import kill_at
from tests.user._runner import nudge
from tests.user._secrets import SECRET_ENV, find_secret, planted
from tests.user.test_runs_over_time import log_files, native_collection, reembed

#: a fixed gamma and no quality gate: the properties are about what is written, not its quality
FIXED = ("--gamma", "0.1", "--min-gain", "-1", "--max-changed-fraction", "1", *BATCH_ARGS)

embedded = pytest.mark.parametrize("user_backend", [n for n in ("chroma-persistent", "milvus-lite")
                                                    if n in selected_harnesses()], indirect=True)
#: the backend that also tries bad plan files, a second apply and a collection that moved on
BAD_FILES_ON = "chroma-persistent"


def targets_of(plan: Path) -> dict:
    """{record id: target vector} as the plan file holds them (base64 of little-endian float32)."""
    doc = json.loads(plan.read_text())
    return {r["id"]: np.frombuffer(base64.b64decode(r["target"]), dtype="<f4") for r in doc["records"]}


@embedded
def test_plan_then_apply_writes_exactly_the_plan(user_backend, collection_name, tmp_path):
    b = user_backend
    coll = native_collection(b, collection_name)
    _, log = log_files(tmp_path, coll)
    secret = planted()
    secret_file = tmp_path / "secret"
    secret_file.write_text(secret + "\n")
    uri = coll.uri + f"&secret_file={secret_file}"
    env = {SECRET_ENV[b.backend]: secret}
    # the plan file's own checks and the collection moving on: the backend plays no part there
    files = b.name == BAD_FILES_ON

    # plan: nothing written; the file holds no secret
    stale = tmp_path / "stale.json"
    planned = nudge("plan", "--store", uri, "--log-file", log, *FIXED, "--out", stale, env=env).report
    assert planned["status"] == "dry-run" and planned["plan"], planned
    assert not differing(b.vectors(coll.name), coll.originals), "plan --out wrote to the collection"
    text = stale.read_text()
    assert not find_secret(secret, text), "the plan file carries the secret"
    if files:  # before anything was applied: a refused apply must not even create the state
        bad_plan_files_are_refused(b, coll, stale, tmp_path)

    # a planned record re-embedded by the application: apply refuses, naming it, writes nothing
    victim = sorted(targets_of(stale), key=repr)[0]
    theirs = reembed(b, coll, victim, seed=99)
    before = {**coll.originals, victim: theirs}
    refused = nudge("apply", stale, "--store", uri, env=env, expect=4)
    assert repr(victim) in refused.stderr and "1 hold another vector" in refused.stderr, refused.describe()
    assert not differing(b.vectors(coll.name), before), "a refused apply wrote"

    # a fresh plan, applied with the plan's own store URI: exactly its targets, nothing else
    fresh = tmp_path / "plan.json"
    nudge("plan", "--store", uri, "--log-file", log, *FIXED, "--out", fresh, env=env)
    targets = targets_of(fresh)
    if b.backend == "milvus":  # an apply SIGKILLed after its 2nd batch: running it again completes it
        killed = nudge("apply", fresh, env={**env, **kill_at("apply.write", 2)}, expect=None)
        assert killed.killed, killed.describe()
        half = b.vectors(coll.name)
        assert 0 < sum(half[i].tobytes() == t.tobytes() for i, t in targets.items()) < len(targets)
    applied = nudge("apply", fresh, env=env).report
    assert applied["status"] == "written" and applied["counts"]["written"] == len(targets) > 0, applied
    stored, snap = b.read(coll.name)
    assert not differing({i: stored[i] for i in targets}, targets), "apply did not write the plan's targets"
    assert not differing({i: v for i, v in stored.items() if i not in targets},
                         {i: v for i, v in before.items() if i not in targets}), "apply wrote records not planned"
    assert checksum(snap) == coll.payloads, "apply changed payloads"

    if files:
        again = nudge("apply", fresh, env=env, expect=3)
        assert "already applied" in again.stderr, again.describe()
        # the collection moved on: a run (this apply) recorded since the first plan was made
        moved_on = nudge("apply", stale, "--store", uri, env=env, expect=4)
        assert "no longer matches" in moved_on.stderr and "recorded" in moved_on.stderr, moved_on.describe()
        # the applied run recorded the plan's basis: the same log and options are nothing new
        noop = nudge("run", "--store", uri, "--log-file", log, *FIXED, env=env, expect=3)
        assert "nothing new since run" in noop.stderr, noop.describe()
        assert not differing(b.vectors(coll.name), stored), "a second or a stale apply, or the run after, wrote"

    undone = nudge("rollback", "--store", uri, *BATCH_ARGS, env=env).report
    assert undone["restored"] == len(targets), undone
    assert not differing(b.vectors(coll.name), before), "rollback after apply did not restore bit for bit"
    assert not find_secret(secret, b.dump(f"{coll.name}_nudge_state")), "the state carries the secret"

    if files:  # the collection made again with another dimension
        b.drop_all(coll.name)
        b.create(coll.name, coll.ids, random_vectors(len(coll.ids), DIM + 1, seed=5, normalize=True), metric="dot")
        moved = nudge("apply", fresh, "--store", coll.uri, expect=4)
        assert f"is now {DIM + 1}-d" in moved.stderr, moved.describe()


def bad_plan_files_are_refused(b: UserBackend, coll: Collection, good: Path, tmp_path: Path) -> None:
    """Truncated, edited, foreign and other-version plan files, a --store naming another collection
    and a NUDGE_SYNC_STORE naming another database: exit 4 with one line, nothing written, the
    state not created."""
    text = good.read_text()
    doc = json.loads(text)
    record = doc["records"][0]
    flipped = bytearray(base64.b64decode(record["target"]))
    flipped[0] ^= 1
    edited = text.replace(record["target"], base64.b64encode(bytes(flipped)).decode())
    bad = {
        "truncated": (text[: len(text) // 2], "not JSON"),
        "edited": (edited, "edited or damaged"),
        "not-a-plan": (json.dumps({"records": []}), "not a nudge-sync plan"),
        "version": (text.replace('"version": 1', '"version": 99', 1), "plan version 99"),
    }
    for name, (content, says) in bad.items():
        path = tmp_path / f"{name}.json"
        path.write_text(content)
        refused = nudge("apply", path, "--store", coll.uri, expect=4)
        assert says in refused.stderr and len(refused.stderr.strip().splitlines()) == 1, (name, refused.describe())
    other = nudge("apply", good, "--store", coll.uri, "--collection", "another", expect=4)
    assert "collection=another" in other.stderr and "nothing was written" in other.stderr, other.describe()
    # NUDGE_SYNC_STORE left set for another job: a collection of the same name in another database
    elsewhere = tmp_path / "elsewhere"
    wrong = nudge("apply", good, env={"NUDGE_SYNC_STORE": f"chroma://{elsewhere}?collection={coll.name}"}, expect=4)
    assert str(elsewhere) in wrong.stderr and "plan was made for" in wrong.stderr, wrong.describe()
    assert not elsewhere.exists(), "a refused apply created the other database"
    with b.native() as h:
        assert not differing(h.vectors(coll.name), coll.originals), "a refused apply wrote"
        assert f"{coll.name}_nudge_state" not in h.collections(), "a refused apply created the state"
