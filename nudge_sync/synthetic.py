"""A deterministic synthetic corpus and labelled query log with a real query-document gap.

Real retrieval logs have two properties NUDGE feeds on, and this generator has both:

* **a gap between query and document embeddings**: a query is not a noisy copy of its answer. It
  is its answer seen through a different "encoder": a fixed random rotation of a subspace, a common
  query-side offset, and noise. Nearest-neighbour search therefore misses many answers, and moving
  a record towards the queries that want it helps;
* **popular records**: answers follow a Zipf law, so held-out (validation, test) queries often ask
  for records that training queries asked for too. That is when fine-tuning the records helps
  unseen queries.

Records are grouped in topics (clusters), so the neighbours a record must beat are close. All
arrays are float32 and built in blocks, so 200,000 x 384 with 20,000 queries takes a few seconds
and little more memory than the corpus itself. Everything is a pure function of ``seed``.

    data = make_corpus(n_records=20_000, dim=128, n_queries=3_000, seed=0)
    data.vectors, data.queries, data.answers, data.splits, data.log_entries()
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ._answers import Answers

if TYPE_CHECKING:  # the core never imports connectors at run time
    from connectors import LabelledQuery

__all__ = ["SyntheticData", "make_corpus"]

SPLIT_SHARES = {"train": 0.7, "val": 0.15, "test": 0.15}
_WORDS = ("alpha", "beta", "gamma", "delta", "sigma", "omega", "kappa", "theta", "lambda", "zeta")


@dataclass
class SyntheticData:
    """A corpus and its labelled query log. ``answers[q]`` are rows of ``vectors``."""

    ids: list[Any]
    vectors: np.ndarray  #: (n, d) float32, unit norm
    topics: np.ndarray  #: (n,) int topic of each record
    payloads: list[dict[str, Any]]
    documents: list[str]
    query_ids: list[str]
    queries: np.ndarray  #: (m, d) float32, unit norm
    answers: list[list[int]]
    grades: list[list[float]]
    splits: list[str]  #: "train" | "val" | "test"
    timestamps: np.ndarray  #: (m,) float64 unix seconds, increasing
    params: dict[str, Any] = field(default_factory=dict)

    def rows(self, split: str) -> np.ndarray:
        return np.array([i for i, s in enumerate(self.splits) if s == split], dtype=np.int64)

    def answers_of(self, split: str) -> Answers:
        """Answers of one split as record rows (for the core estimators)."""
        rows = self.rows(split)
        return Answers.from_lists([self.answers[r] for r in rows], [self.grades[r] for r in rows])

    def log_entries(self, splits: tuple[str, ...] = ("train", "val", "test")) -> list[LabelledQuery]:
        """The query log as ``connectors.LabelledQuery`` entries, answers as record ids."""
        from connectors import LabelledQuery

        return [
            LabelledQuery(self.query_ids[q], self.queries[q], [self.ids[r] for r in self.answers[q]],
                          list(self.grades[q]), float(self.timestamps[q]), self.splits[q])
            for q in range(len(self.query_ids)) if self.splits[q] in splits
        ]


def _unit(x: np.ndarray) -> np.ndarray:
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def make_corpus(
    n_records: int = 20_000,
    dim: int = 128,
    n_queries: int = 3_000,
    *,
    seed: int = 0,
    n_topics: int | None = None,
    topic_spread: float = 0.5,
    gap: float = 0.8,
    noise: float = 1.0,
    max_answers: int = 3,
    zipf: float = 1.1,
    id_type: str = "str",
    block: int = 65_536,
) -> SyntheticData:
    """Generate the corpus and log; see the module docstring.

    topic_spread: how far records scatter around their topic centre (relative to the centre).
    gap: strength of the query-side distortion (0 = queries live in the records' space).
    noise: per-query noise. max_answers: each query has 1..max_answers answers from one topic.
    zipf: popularity exponent of answers. id_type: "str" ("doc-000123") or "int" (1, 8, 15, ...).
    """
    if n_records < 2 or dim < 2 or n_queries < 1:
        raise ValueError("need at least 2 records, 2 dimensions and 1 query")
    if id_type not in ("str", "int"):
        raise ValueError(f"id_type must be 'str' or 'int', got {id_type!r}")
    rng = np.random.default_rng(seed)
    n_topics = n_topics or max(2, n_records // 50)

    centres = _unit(rng.standard_normal((n_topics, dim), dtype=np.float32))
    topics = rng.integers(0, n_topics, size=n_records)
    vectors = np.empty((n_records, dim), dtype=np.float32)
    scale = np.float32(topic_spread / np.sqrt(dim))
    for s in range(0, n_records, block):
        e = min(s + block, n_records)
        part = rng.standard_normal((e - s, dim), dtype=np.float32)
        part *= scale
        part += centres[topics[s:e]]
        vectors[s:e] = _unit(part)

    # the query "encoder": rotate a random half of the dimensions, add a common offset
    sub = rng.choice(dim, size=max(2, dim // 2), replace=False)
    rotation, _ = np.linalg.qr(rng.standard_normal((sub.size, sub.size)))
    offset = _unit(rng.standard_normal((1, dim), dtype=np.float32))[0]

    # popular records answer many queries (Zipf over a random order of the records)
    popularity = 1.0 / np.arange(1, n_records + 1) ** zipf
    popularity /= popularity.sum()
    order = rng.permutation(n_records)
    first = order[rng.choice(n_records, size=n_queries, p=popularity)]
    by_topic = _members(topics, n_topics)
    answers: list[list[int]] = []
    grades: list[list[float]] = []
    for q in range(n_queries):
        row = int(first[q])
        extra = int(rng.integers(0, max_answers))
        mates = by_topic[topics[row]]
        others = [int(m) for m in rng.choice(mates, size=min(extra, len(mates)), replace=False) if m != row]
        answers.append([row, *others])
        grades.append([2.0] + [1.0] * len(others))

    queries = np.empty((n_queries, dim), dtype=np.float32)
    for q in range(n_queries):
        w = np.asarray(grades[q], dtype=np.float32)
        queries[q] = (w[:, None] * vectors[answers[q]]).sum(0)
    queries = _unit(queries)
    distorted = queries.copy()
    distorted[:, sub] = queries[:, sub] @ rotation.T.astype(np.float32)
    queries = (1 - gap) * queries + gap * distorted + gap * 0.5 * offset
    # per-component noise: at a fixed total norm, low dimensions would drown and high ones barely
    # notice it (random directions are farther apart in high dimensions); calibrated at 128 dims
    queries += np.float32(noise / np.sqrt(128.0)) * rng.standard_normal(queries.shape, dtype=np.float32)
    queries = _unit(queries.astype(np.float32))

    cut = np.cumsum([SPLIT_SHARES[s] for s in ("train", "val", "test")])
    u = rng.random(n_queries)
    splits = ["train" if x < cut[0] else "val" if x < cut[1] else "test" for x in u]

    ids: list[Any] = [f"doc-{i:06d}" for i in range(n_records)] if id_type == "str" else \
        [1 + 7 * i for i in range(n_records)]
    payloads = [{"title": f"record {i}", "topic": int(topics[i]), "lang": "en"} for i in range(n_records)]
    documents = [f"{_WORDS[topics[i] % len(_WORDS)]} topic {topics[i]}: synthetic record {i}" for i in range(n_records)]
    return SyntheticData(
        ids=ids, vectors=vectors, topics=topics, payloads=payloads, documents=documents,
        query_ids=[f"q-{q:06d}" for q in range(n_queries)], queries=queries, answers=answers, grades=grades,
        splits=splits, timestamps=1_700_000_000.0 + np.arange(n_queries, dtype=np.float64) * 60.0,
        params=dict(n_records=n_records, dim=dim, n_queries=n_queries, seed=seed, n_topics=n_topics,
                    topic_spread=topic_spread, gap=gap, noise=noise, max_answers=max_answers, zipf=zipf),
    )


def _members(topics: np.ndarray, n_topics: int) -> list[np.ndarray]:
    order = np.argsort(topics, kind="stable")
    bounds = np.searchsorted(topics[order], np.arange(n_topics + 1))
    return [order[bounds[t] : bounds[t + 1]] for t in range(n_topics)]
