"""The state collection as a hostile or careless user meets it (issue 18 items 1-3), every command its
own ``nudge-sync`` process, results read back with the database's own client. One collection and
one first run per backend serve the three findings, in this order:

1. ``--state`` naming the user's collection, its log, or a collection nudge-sync did not create is
   refused (exit 4) and an empty ``--state`` / ``--log`` is a usage error (exit 2); on the
   finding's main a run with ``--state <collection>`` added a record to it (exit 3), and
   ``--state <collection>_feedback`` one to the log. ``feedback add|import --log`` naming a collection
   nudge-sync did not create is refused too (it appended into it).
2. An original edited by hand in the state is refused by rollback, run and status (exit 4, naming
   the record); ``--skip-unverified`` rolls back the others and leaves that record as it is.
3. A state collection of another dimension than the collection -- here the collection made again
   with 32-d vectors (a new embedding model), its 16-d state left under the state's name -- is
   refused by status, run, rollback and history (exit 4) with a message naming which side holds
   which dimension (the check compares the two, whichever side changed).

Each refusal leaves the collection, its log and the state byte for byte as they were (count and a
digest of every record, vectors included), and creates or drops no collection.

What depends on the database runs on every backend: a foreign ``--state`` and ``--log`` (the
connector reads the collection to find it is not nudge-sync's), the checksums of the originals as
each database stores them, the dimension of the state as each connector reports it. What does not
-- the rule on names (engine/names.py: the collection itself, its log, the state as a log; a
foreign collection under such a name would still be refused on every backend as foreign), empty or
blank names (click refuses them before the store is opened), which commands open the state through
the one ``state_open.open_state``, and how ``status`` counts and prints a skipped entry -- runs on one
backend (``EVERY_COMMAND``). ``milvus-lite-server`` is left out: it runs the engine (Milvus Lite)
and the connector code of ``milvus-lite`` and the ``milvus+http`` URI path of ``milvus-2.3.5``, and
nothing here stops or restarts a server (tests/REMOVED_TESTS.md).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest

from nudge_sync.engine.state import encode_id
from tests.backends import Harness, random_vectors
from tests.conftest import selected_harnesses
from tests.user._data import BATCH_ARGS, DIM, RECORDS, Collection, feedback_file, make_collection
from tests.user._digest import digests
from tests.user._native import UserBackend, checksum
from tests.user._runner import nudge

GUARDED = [n for n in selected_harnesses() if n not in ("milvus-lite-server", "memory")]
#: the backend that also runs the checks that do not depend on the database (module docstring)
EVERY_COMMAND = next((n for n in ("chroma-persistent", "qdrant-local", "milvus-lite") if n in GUARDED),
                     GUARDED[0] if GUARDED else "")
#: the dimension of the collection made again, beside its state of DIM
WIDE = 32


def refused(*args: object, code: int = 4, says: str = "") -> str:
    result = nudge(*args, expect=code, as_json=False)
    message = result.stderr + result.stdout
    assert says in message, f"the message does not say {says!r}:\n{result.describe()}"
    return message


@pytest.mark.parametrize("user_backend", GUARDED, indirect=True)
def test_the_state_is_guarded(user_backend, collection_name, tmp_path):
    b = user_backend
    every = b.name == EVERY_COMMAND
    if every:  # the log's own checks need it in the database, imported by `feedback import`
        coll, log_args = make_collection(b, collection_name, tmp_path), ()
    else:  # elsewhere the first run reads it from a file: one process less
        coll, log_args = native_collection(b, collection_name, tmp_path)
    run = nudge("run", "--store", coll.uri, *log_args, *BATCH_ARGS).report
    assert run["status"] == "written" and run["counts"]["written"] > 0, run
    never_the_users_own_collection(b, coll, tmp_path, every)
    an_original_edited_by_hand_is_refused_then_skipped(b, coll, every)
    a_state_of_another_dimension_is_refused_naming_both_sides(b, coll, every)


def native_collection(b: UserBackend, name: str, directory: Path) -> tuple[Collection, tuple[str, str]]:
    """The suite's collection (tests/user/_data.py) created with the native client, without a log
    collection; the arguments that give a run its feedback file."""
    vectors = random_vectors(RECORDS, DIM, seed=5, normalize=True)  # as make_collection makes them
    with b.native() as h:
        ids = h.make_ids(RECORDS)
        h.create(name, ids, vectors, metric="cosine", rich=True)
    # read in an open of its own: Qdrant local mode gives back, in the client that wrote them, cosine
    # vectors a few ulps off what it stored (and what any later open reads)
    stored, snap = b.read(name)
    log = feedback_file(directory, ids, vectors)
    return Collection(b, name, ids, "cosine", stored, checksum(snap)), ("--log-file", str(log))


def kept(coll: Collection, every: bool) -> tuple[str, ...]:
    """The collections a refused command must leave as they were: the user's, its log (where it is in
    the database) and the state."""
    return (coll.name, *((coll.name + "_feedback",) if every else ()), coll.name + "_nudge_state")


def never_the_users_own_collection(b: UserBackend, coll: Collection, tmp_path: Path, every: bool) -> None:
    log, state, foreign = coll.name + "_feedback", coll.name + "_nudge_state", coll.name + "_other"
    with b.native() as h:  # a collection of the same dimension that nudge-sync did not create
        h.create(foreign, h.make_ids(5), np.eye(5, DIM, dtype=np.float32), metric="dot", rich=True)
        before = digests(h, *kept(coll, every), foreign)
    feedback = tmp_path / "feedback.jsonl"

    # the connector reads the collection and finds it is not nudge-sync's: every backend
    refused("run", "--store", coll.uri, "--state", foreign, *BATCH_ARGS, says="not a nudge-sync state collection")
    # --log naming a collection nudge-sync did not create: no append into it (the cold try's finding)
    refused("feedback", "import", "--store", coll.uri, "--log", foreign, feedback, says="not a nudge-sync query log")
    if every:
        refused("rollback", "--store", coll.uri, "--state", foreign, says="not a nudge-sync state collection")
        refused("feedback", "add", "--store", coll.uri, "--log", foreign, "--query-id", "q-new",
                "--vector", ",".join(["0.25"] * DIM), "--relevant", str(coll.ids[0]), says="not a nudge-sync query log")
        # the rule on names (engine/names.py), decided before any collection is read
        refused("run", "--store", coll.uri, "--state", coll.name, *BATCH_ARGS, says="names the collection itself")
        refused("run", "--store", coll.uri, "--state", log, *BATCH_ARGS, says="names the query log")
        refused("status", "--store", coll.uri, "--state", coll.name, says="names the collection itself")
        refused("rollback", "--store", coll.uri, "--state", log, says="names the query log")
        refused("feedback", "import", "--store", coll.uri, "--log", coll.name, feedback, says="names the collection itself")
        refused("feedback", "import", "--store", coll.uri, "--log", state, feedback, says="state collection")
        # usage errors: click refuses them before the store is opened
        for command in (("run", *BATCH_ARGS), ("status",), ("rollback",), ("history",)):
            refused(*command[:1], "--store", coll.uri, "--state", "", *command[1:], code=2, says="is empty")
        refused("run", "--store", coll.uri, "--log", "", *BATCH_ARGS, code=2, says="is empty")
        refused("run", "--store", coll.uri, "--state", " x", *BATCH_ARGS, code=2, says="blank")

    with b.native() as h:
        assert digests(h, *kept(coll, every), foreign) == before, "a refused command wrote, created or dropped"
        h.drop(foreign)


def _edit_original(b: UserBackend, h: Harness, state: str, record_id: object, vector: np.ndarray) -> None:
    """Replace one original's vector in the state collection, as someone would by hand."""
    key = f"original:{encode_id(record_id)}"
    if b.backend == "qdrant":
        from qdrant_client import models

        from connectors.qdrant.client import _NAMESPACE

        point = str(uuid.uuid5(_NAMESPACE, key))
        h.client.update_vectors(state, points=[models.PointVectors(id=point, vector=vector.tolist())], wait=True)
    elif b.backend == "chroma":
        h.client.get_collection(state, embedding_function=None).update(ids=[key], embeddings=[vector.tolist()])
    else:
        (row,) = h.client.query(state, filter=f'id == "{key}"', output_fields=["*"], consistency_level="Strong")
        h.client.upsert(state, [{**row, "vector": vector.tolist()}])


def an_original_edited_by_hand_is_refused_then_skipped(b: UserBackend, coll: Collection, every: bool) -> None:
    state = coll.name + "_nudge_state"
    with b.native() as h:
        nudged = h.vectors(coll.name)
        moved = sorted((i for i in coll.ids if nudged[i].tobytes() != coll.originals[i].tobytes()), key=repr)
        victim = moved[0]
        _edit_original(b, h, state, victim, np.full(DIM, 0.25, np.float32))
        before = digests(h, *kept(coll, every))

    # rollback is the command that would write the edited original back: every backend
    for command in (("rollback",), ("status",), ("run", *BATCH_ARGS)) if every else (("rollback",),):
        message = refused(*command[:1], "--store", coll.uri, *command[1:], says="no longer match their checksums")
        assert repr(victim) in message and "--skip-unverified" in message, message
    with b.native() as h:
        assert digests(h, *kept(coll, every)) == before, "a refused command wrote, created or dropped"

    if every:  # the report's counts come from the verdicts rollback --skip-unverified checks below
        status = nudge("status", "--store", coll.uri, "--skip-unverified").report
        # cold try: the skipped record was reported as "re-embedded by someone else": nobody re-embedded it
        assert (status["unverified"], status["adopted"]) == (1, 0), status
        text = nudge("status", "--store", coll.uri, "--skip-unverified", as_json=False).stdout
        assert "1 state entries fail their checksums" in text and "0 were re-embedded" in text, text
    undone = nudge("rollback", "--store", coll.uri, "--skip-unverified", *BATCH_ARGS).report
    assert undone["skipped_unverified"] == [victim] and undone["restored"] == len(moved) - 1, undone
    assert undone["skipped_reembedded"] == 0, undone
    after = b.vectors(coll.name)
    assert after[victim].tobytes() == nudged[victim].tobytes(), "the unverified record was overwritten"
    tolerance = 0.0 if b.rollback_is_bit_exact(coll.metric) else 2.0**-23
    worst = max(float(np.max(np.abs(after[i] - coll.originals[i]))) for i in coll.ids if i != victim)
    assert worst <= tolerance, f"a restored vector is {worst:.3g} off its original"
    # the skipped entry was replaced by what the record holds now: every command verifies again
    final = nudge("status", "--store", coll.uri).report
    assert (final["unverified"], final["nudged"]) == (0, 0), final


def a_state_of_another_dimension_is_refused_naming_both_sides(b: UserBackend, coll: Collection, every: bool) -> None:
    state = coll.name + "_nudge_state"
    # the collection made again with 32-d vectors (a new embedding model), its 16-d state left behind
    with b.native() as h:
        h.drop(coll.name)
        vectors = np.random.default_rng(7).standard_normal((len(coll.ids), WIDE)).astype(np.float32)
        h.create(coll.name, coll.ids, vectors, metric="cosine", rich=True)
    with b.native() as h:  # an open of its own: Qdrant local mode's writing client reads back cosine
        before = digests(h, *kept(coll, every))  # vectors other than it stored (see native_collection)

    says = f"state collection {state!r} holds {DIM}-d vectors, but collection {coll.name!r} holds {WIDE}-d vectors"
    # run is the command that would create or write the state: every backend
    commands = (("run", *BATCH_ARGS), ("status",), ("rollback",), ("history",)) if every else (("run", *BATCH_ARGS),)
    for command in commands:
        refused(*command[:1], "--store", coll.uri, *command[1:], says=says)
    with b.native() as h:
        assert digests(h, *kept(coll, every)) == before, "a refused command wrote, created or dropped"
