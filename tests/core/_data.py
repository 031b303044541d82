"""Small random retrieval problems for the core tests (deterministic from a seed)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nudge_sync.core.answers import Answers


@dataclass
class Problem:
    X: np.ndarray  # full corpus (N, d)
    tq: np.ndarray
    ta: list[list[int]]
    vq: np.ndarray
    va: list[list[int]]
    tg: list[list[float]]
    vg: list[list[float]]

    @property
    def trained(self) -> np.ndarray:
        return np.unique(np.concatenate([np.asarray(r, dtype=np.int64) for r in self.ta])) if self.ta else np.zeros(0, np.int64)


def make_problem(seed: int, n: int = 60, d: int = 8, nt: int = 30, nv: int = 20, max_ans: int = 3,
                 noise: float = 0.7, train_pool: float = 0.5, dtype=np.float64) -> Problem:
    """Queries are noisy combinations of their answers; training answers come from the first
    ``train_pool`` share of the corpus, validation answers from anywhere."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    pool = max(1, int(n * train_pool))

    def queries(nq, hi):
        ans = [sorted(map(int, rng.choice(hi, size=int(rng.integers(1, min(max_ans, hi) + 1)), replace=False)))
               for _ in range(nq)]
        Q = np.stack([Xn[a].sum(0) + noise * rng.normal(size=d) for a in ans]) if nq else np.zeros((0, d))
        grades = [list(map(float, rng.integers(1, 4, size=len(a)))) for a in ans]
        return Q.astype(dtype), ans, grades

    tq, ta, tg = queries(nt, pool)
    vq, va, vg = queries(nv, n)
    return Problem(X.astype(dtype), tq, ta, vq, va, tg, vg)


def answers(lists, grades=None) -> Answers:
    return Answers.from_lists(lists, grades)
