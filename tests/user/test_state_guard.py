"""The state collection as a hostile or careless user meets it (issue 18 items 1-3), every command its
own ``nudge-sync`` process, results read back with the database's own client:

1. ``--state`` naming the user's collection, its log, or a collection nudge-sync did not create is
   refused (exit 4) and an empty ``--state`` / ``--log`` is a usage error (exit 2); on the
   finding's main a run with ``--state <collection>`` added a record to it (exit 3), and
   ``--state <collection>_feedback`` one to the log. ``feedback add|import --log`` naming a collection
   nudge-sync did not create is refused too (it appended into it).
2. An original edited by hand in the state is refused by rollback, run and status (exit 4, naming
   the record); ``--skip-unverified`` rolls back the others and leaves that record as it is.
3. A state collection of another dimension under the collection's state name is refused by status,
   run and rollback (exit 4) with a message naming which side holds which dimension.

Each refusal leaves the collection, its log and the state byte for byte as they were (count and a
digest of every record, vectors included).
"""

from __future__ import annotations

import hashlib
import json
import uuid

import numpy as np

from nudge_sync.engine.state import encode_id
from tests.user._data import BATCH_ARGS, Collection, make_collection
from tests.user._native import UserBackend
from tests.user._runner import nudge


def digest(b: UserBackend, name: str) -> tuple[int, str]:
    """(record count, one digest of every record: id, vectors and everything else) of any collection
    (data, log or state), read with the database's own client."""
    with b.native() as h:
        if b.backend == "qdrant":
            points, _ = h.client.scroll(name, limit=100_000, with_payload=True, with_vectors=True)
            rows = [{"id": p.id, "payload": p.payload, "vector": p.vector} for p in points]
        elif b.backend == "milvus":
            h.client.load_collection(name)
            rows = h.client.query(name, filter="", output_fields=["*"], limit=16_384, consistency_level="Strong")
        else:
            got = h.client.get_collection(name, embedding_function=None).get(
                include=["embeddings", "metadatas", "documents"])
            rows = [{"id": i, "vector": np.asarray(e, np.float32).tobytes().hex(), "meta": m, "doc": d}
                    for i, e, m, d in zip(got["ids"], got["embeddings"], got["metadatas"], got["documents"])]
    text = sorted(json.dumps(r, sort_keys=True, default=_plain) for r in rows)
    return len(rows), hashlib.sha256("\n".join(text).encode()).hexdigest()


def _plain(value: object) -> object:
    """numpy values and float vectors as exact text (every bit counts)."""
    if isinstance(value, np.ndarray):
        return np.asarray(value, np.float32).tobytes().hex()
    if isinstance(value, np.generic):
        return value.item()
    return repr(value)


def digests(b: UserBackend, *names: str) -> dict[str, tuple[int, str]]:
    return {n: digest(b, n) for n in names}


def refused(*args: object, code: int = 4, says: str = "") -> str:
    result = nudge(*args, expect=code, as_json=False)
    message = result.stderr + result.stdout
    assert says in message, f"the message does not say {says!r}:\n{result.describe()}"
    return message


def first_run(b: UserBackend, name: str, tmp_path, **kw) -> tuple[Collection, dict]:
    coll = make_collection(b, name, tmp_path, **kw)
    run = nudge("run", "--store", coll.uri, *BATCH_ARGS).report
    assert run["status"] == "written" and run["counts"]["written"] > 0, run
    return coll, run


def test_state_is_never_the_users_own_collection(user_backend, collection_name, tmp_path):
    b = user_backend
    coll, _ = first_run(b, collection_name, tmp_path)
    log, state = coll.name + "_feedback", coll.name + "_nudge_state"
    foreign = coll.name + "_other"
    with b.native() as h:  # a collection of the same dimension that nudge-sync did not create
        h.create(foreign, h.make_ids(5), np.eye(5, 16, dtype=np.float32), metric="dot", rich=True)
    names = sorted(b.collections())
    before = digests(b, coll.name, log, state, foreign)

    refused("run", "--store", coll.uri, "--state", coll.name, *BATCH_ARGS, says="names the collection itself")
    refused("run", "--store", coll.uri, "--state", log, *BATCH_ARGS, says="names the query log")
    refused("status", "--store", coll.uri, "--state", coll.name, says="names the collection itself")
    refused("rollback", "--store", coll.uri, "--state", log, says="names the query log")
    refused("run", "--store", coll.uri, "--state", foreign, *BATCH_ARGS, says="not a nudge-sync state collection")
    refused("rollback", "--store", coll.uri, "--state", foreign, says="not a nudge-sync state collection")
    refused("feedback", "import", "--store", coll.uri, "--log", coll.name, tmp_path / "feedback.jsonl",
            says="names the collection itself")
    refused("feedback", "import", "--store", coll.uri, "--log", state, tmp_path / "feedback.jsonl",
            says="state collection")
    # --log naming a collection nudge-sync did not create: no append into it (the cold try's finding)
    refused("feedback", "import", "--store", coll.uri, "--log", foreign, tmp_path / "feedback.jsonl",
            says="not a nudge-sync query log")
    refused("feedback", "add", "--store", coll.uri, "--log", foreign, "--query-id", "q-new",
            "--vector", ",".join(["0.25"] * 16), "--relevant", str(coll.ids[0]), says="not a nudge-sync query log")
    for command in (("run", *BATCH_ARGS), ("status",), ("rollback",), ("history",)):
        refused(*command[:1], "--store", coll.uri, "--state", "", *command[1:], code=2, says="is empty")
    refused("run", "--store", coll.uri, "--log", "", *BATCH_ARGS, code=2, says="is empty")
    refused("run", "--store", coll.uri, "--state", " x", *BATCH_ARGS, code=2, says="blank")

    assert digests(b, coll.name, log, state, foreign) == before, "a refused command wrote something"
    assert sorted(b.collections()) == names, "a refused command created or dropped a collection"


def _edit_original(b: UserBackend, state: str, record_id: object, vector: np.ndarray) -> None:
    """Replace one original's vector in the state collection, as someone would by hand."""
    key = f"original:{encode_id(record_id)}"
    with b.native() as h:
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


def test_an_original_edited_by_hand_is_refused_then_skipped(user_backend, collection_name, tmp_path):
    b = user_backend
    coll, _ = first_run(b, collection_name, tmp_path)
    log, state = coll.name + "_feedback", coll.name + "_nudge_state"
    nudged = b.vectors(coll.name)
    moved = sorted((i for i in coll.ids if nudged[i].tobytes() != coll.originals[i].tobytes()), key=repr)
    victim = moved[0]
    _edit_original(b, state, victim, np.full(16, 0.25, np.float32))
    before = digests(b, coll.name, log, state)

    for command in (("rollback",), ("status",), ("run", *BATCH_ARGS)):
        message = refused(*command[:1], "--store", coll.uri, *command[1:], says="no longer match their checksums")
        assert repr(victim) in message and "--skip-unverified" in message, message
    assert digests(b, coll.name, log, state) == before, "a refused command wrote something"

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


def test_a_state_of_another_dimension_is_refused_naming_both_sides(user_backend, collection_name, tmp_path):
    b = user_backend
    coll, _ = first_run(b, collection_name, tmp_path)
    state = coll.name + "_nudge_state"
    # the state replaced by one of another dimension (a 32-d collection's, given the same name)
    b.drop_all(state)
    (tmp_path / "wide").mkdir()
    wide = make_collection(b, coll.name + "w", tmp_path / "wide", dim=32)
    nudge("run", "--store", wide.uri, "--state", state, "--min-gain", "-1", *BATCH_ARGS)
    before = digests(b, coll.name, coll.name + "_feedback", state)

    says = f"state collection {state!r} holds 32-d vectors, but collection {coll.name!r} holds 16-d vectors"
    for command in (("status",), ("run", *BATCH_ARGS), ("rollback",), ("history",)):
        refused(*command[:1], "--store", coll.uri, *command[1:], says=says)
    assert digests(b, coll.name, coll.name + "_feedback", state) == before, "a refused command wrote something"
