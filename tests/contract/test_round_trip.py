"""What ``describe()`` says about reading back is true on every backend: a written vector comes back
within ``round_trip_tolerance`` (bit for bit where it is 0), and reading a stored vector again gives
the very same bytes. The sync engine relies on both: the first to tell its own writes from someone
else's, the second to notice a record that changed between its plan and its write.
``milvus-lite-server`` is left out (tests/conftest.py ``TWIN_HARNESSES``)."""

from __future__ import annotations

import numpy as np
import pytest

import connectors
from nudge_sync.engine.classify import same_vector
from tests.backends import random_vectors
from tests.conftest import TWIN_HARNESSES, harness_without

harness = harness_without(*TWIN_HARNESSES)

N, DIM = 64, 12


@pytest.mark.parametrize("metric", ["cosine", "dot"])
def test_read_back_is_within_the_declared_tolerance_and_repeatable(harness, collection_name, metric):
    ids = harness.make_ids(N)
    harness.create(collection_name, ids, random_vectors(N, DIM, seed=1, normalize=True), metric=metric, rich=False)
    try:
        with connectors.open_store(harness.uri(collection_name)) as store:
            info = store.describe()
            assert info.round_trip_tolerance == (0.0 if metric == "dot" or harness.backend == "milvus" else 1e-6)
            assert info.renormalises is (info.round_trip_tolerance > 0)  # the typed capability rollback reads
            # unit vectors as NUDGE-N writes them, and a few of other norms
            sent = random_vectors(N, DIM, seed=2, normalize=True)
            sent[: N // 4] *= 3.0
            store.update_vectors(ids, sent, verify=False)
            found, back, _ = store.get_vectors(ids)
            assert found == ids
            for got, want in zip(back, sent):
                if metric == "cosine" and harness.backend == "qdrant":
                    want = want / np.linalg.norm(want)  # Qdrant stores cosine vectors normalised
                assert same_vector(got, want, info.round_trip_tolerance)
            _, again, _ = store.get_vectors(ids)
            assert again.tobytes() == back.tobytes()
            streamed = {i: v for batch, vecs in store.iter_vectors(batch_size=16) for i, v in zip(batch, vecs)}
            assert all(streamed[i].tobytes() == v.tobytes() for i, v in zip(ids, back))
    finally:
        harness.drop(collection_name)
