"""Fixtures shared by the engine tests."""

from __future__ import annotations

import pytest

from tests.backends import random_vectors

#: The state tests' collection: records x dimension.
N, DIM = 400, 16


@pytest.fixture
def coll(harness, collection_name):
    """A rich dot-product collection of N unit vectors on each backend: (name, ids, vectors)."""
    ids = harness.make_ids(N)
    vectors = random_vectors(N, DIM, seed=5, normalize=True)
    harness.create(collection_name, ids, vectors, metric="dot", rich=True)
    yield collection_name, ids, vectors
    for name in harness.collections():
        if name.startswith(collection_name):
            harness.drop(name)
