"""Every option of a run, as the library takes it, refused by name when it is not a finite number in
its range (a NaN compares false with every bound, so NaN used to pass every check)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nudge_sync import SyncOptions
from nudge_sync.engine.errors import RefusedInput
from nudge_sync.engine.options import check_metric

NAN, INF = math.nan, math.inf


@pytest.mark.parametrize("field, value", [
    ("tolerance", NAN), ("tolerance", -1e-9), ("tolerance", INF),
    ("min_gain", NAN), ("min_gain", 1.5), ("min_gain", -INF),
    ("lock_ttl", NAN), ("lock_ttl", INF), ("lock_ttl", 0), ("lock_ttl", 31 * 86_400),
    ("max_changed_fraction", NAN), ("max_changed_fraction", 0), ("max_changed_fraction", 1.01),
    ("val_fraction", NAN), ("val_fraction", 1), ("val_fraction", 0),
    ("gamma", NAN), ("gamma", -0.1), ("gamma", 4.5), ("gamma", INF),
    ("context_k", 0), ("context_k", 4097), ("context_k", 2.5), ("context_k", True),
    ("min_val_queries", 0), ("min_new_feedback", -1), ("batch_size", 0),
    ("objective", "foo"), ("objective", "ndcg@0"), ("objective", "ndcg@99999999999999999999"), ("objective", 10),
    ("split_salt", None),
])
def test_out_of_range_options_are_refused_by_name(field, value):
    with pytest.raises(RefusedInput, match=rf"option {field}="):
        SyncOptions(**{field: value}).validate()


def test_in_range_options_pass_and_the_objective_is_canonical():
    opts = SyncOptions(gamma=np.float32(0.5), context_k=np.int64(4096), min_gain=-1.0, lock_ttl=30 * 86_400,
                       max_changed_fraction=1, objective=" NDCG @ 10 ").validate()
    assert opts.objective == "ndcg@10"
    assert SyncOptions(method="nudge-m", gamma=1000.0).validate().gamma == 1000.0
    with pytest.raises(RefusedInput, match="from 0 to 1000"):
        SyncOptions(method="nudge-m", gamma=1000.5).validate()


@pytest.mark.parametrize("spec, expected", [("r@5", "recall@5"), ("acc@1", "hit@1"), ("MRR@4096", "mrr@4096")])
def test_metric_aliases(spec, expected):
    assert check_metric(spec) == expected
