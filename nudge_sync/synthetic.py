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

Two label shapes:

* ``labels="sparse"`` (default): 1..``max_answers`` answers per query, SciFact-like;
* ``labels="dense"``: NFCorpus-like (a BEIR corpus of medical abstracts whose queries each have
  tens of graded relevant records): about ``mean_answers`` (default 40) answers per query, drawn
  around one "seed" record of a popular topic, so records answer many queries each; the closest
  quarter graded 2, the rest 1; validation queries are just as dense; all queries share a
  "domain" direction (one subject area: many records compete for every query); and a share of the
  records (``duplicate_share``, default 1.3 %: about 80 records in groups of 2 or 3 at NFCorpus
  size) are exact copies of another record, labelled independently (a query may list one copy
  and not the other), which makes exact score ties common. Split 0.8 / 0.1 / 0.1. :data:`NFCORPUS_LIKE` gives the NFCorpus size (3,600 records, ~2,600 training queries
  with ~110,000 pairs, ~320 validation queries); it scales to 200,000 records and more.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .core.answers import Answers

if TYPE_CHECKING:  # the core never imports connectors at run time
    from connectors import LabelledQuery

__all__ = ["NFCORPUS_LIKE", "SyntheticData", "kmeans_labels", "make_corpus"]

SPLIT_SHARES = {"train": 0.7, "val": 0.15, "test": 0.15}
DENSE_SPLIT_SHARES = {"train": 0.8, "val": 0.1, "test": 0.1}
#: make_corpus arguments that reproduce NFCorpus's shape (BEIR: 3,633 docs; 2,590 / 324 / 323
#: train / dev / test queries with 110,575 / 11,385 / 12,334 graded relevant pairs; exact-duplicate
#: documents). Scale ``n_records`` and ``n_queries`` together for a bigger corpus of the same shape.
NFCORPUS_LIKE = {"n_records": 3_600, "dim": 384, "n_queries": 3_240, "labels": "dense"}
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
    copy_of: np.ndarray | None = None  #: (n,) source row of each exact-duplicate record, -1 otherwise
    skipped: list[list[int]] | None = None  #: per query, records shown and not chosen (``skipped=k``)

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
    labels: str = "sparse",
    mean_answers: float = 50.0,
    duplicate_share: float | None = None,
    domain: float | None = None,
    skipped: int = 0,
    block: int = 65_536,
) -> SyntheticData:
    """Generate the corpus and log; see the module docstring.

    topic_spread: how far records scatter around their topic centre (relative to the centre).
    gap: strength of the query-side distortion (0 = queries live in the records' space).
    noise: per-query noise. max_answers: each query has 1..max_answers answers from one topic.
    zipf: popularity exponent of answers (dense: of topics). id_type: "str" ("doc-000123") or
    "int" (1, 8, 15, ...). labels: "sparse" or "dense" (module docstring); mean_answers: dense
    answers per query before the cap at the topic's size (about 40 after it). duplicate_share:
    share of records that are exact copies of another record (default 0 sparse, 0.013 dense).
    domain: weight of one direction shared by every query (and, at 0.6 of it, every record), as
    in a one-domain corpus where all queries look alike (default 0 sparse, 0.35 dense); it makes
    many records compete at once. n_topics defaults to n_records // 50 (sparse) or // 100 (dense).
    skipped: per query, this many records shown and not chosen (negative feedback): the records
    ranked highest for the query by the stored vectors among those it does not list, i.e. what a
    result page showed above or among the answers and the user passed over (default 0: none; the
    other outputs do not depend on it).
    """
    if n_records < 2 or dim < 2 or n_queries < 1:
        raise ValueError("need at least 2 records, 2 dimensions and 1 query")
    if id_type not in ("str", "int"):
        raise ValueError(f"id_type must be 'str' or 'int', got {id_type!r}")
    if labels not in ("sparse", "dense"):
        raise ValueError(f"labels must be 'sparse' or 'dense', got {labels!r}")
    dense = labels == "dense"
    if duplicate_share is None:
        duplicate_share = 0.013 if dense else 0.0
    if domain is None:
        domain = 0.35 if dense else 0.0
    if not 0.0 <= duplicate_share < 0.5:
        raise ValueError(f"duplicate_share must be in [0, 0.5), got {duplicate_share!r}")
    if not mean_answers >= 1:
        raise ValueError(f"mean_answers must be >= 1, got {mean_answers!r}")
    rng = np.random.default_rng(seed)
    n_topics = n_topics or max(2, n_records // (100 if dense else 50))

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

    # duplicates come from their own stream, so the sparse corpus without them is unchanged
    # the shared domain direction and the duplicates come from their own streams, so the sparse
    # corpus without them is unchanged
    shared = _unit(np.random.default_rng([seed, 3]).standard_normal((1, dim), dtype=np.float32))[0]
    if domain:
        for s in range(0, n_records, block):
            vectors[s : s + block] = _unit(vectors[s : s + block] + np.float32(0.6 * domain) * shared)
    copy_of = _make_duplicates(np.random.default_rng([seed, 1]), vectors, topics, duplicate_share)
    if dense:
        answers, grades = _dense_answers(np.random.default_rng([seed, 2]), vectors, topics, n_topics, n_queries,
                                         mean_answers, zipf, copy_of)
    else:
        answers, grades = _sparse_answers(rng, topics, n_topics, n_records, n_queries, max_answers, zipf)

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
    if domain:
        queries = _unit(queries + np.float32(domain) * shared)

    shares = DENSE_SPLIT_SHARES if dense else SPLIT_SHARES
    cut = np.cumsum([shares[s] for s in ("train", "val", "test")])
    u = rng.random(n_queries)
    splits = ["train" if x < cut[0] else "val" if x < cut[1] else "test" for x in u]

    neg = _skipped(vectors, queries, answers, skipped) if skipped else None

    ids: list[Any] = [f"doc-{i:06d}" for i in range(n_records)] if id_type == "str" else \
        [1 + 7 * i for i in range(n_records)]
    payloads = [{"title": f"record {i}", "topic": int(topics[i]), "lang": "en"} for i in range(n_records)]
    documents = [f"{_WORDS[topics[i] % len(_WORDS)]} topic {topics[i]}: synthetic record {i}" for i in range(n_records)]
    params = dict(n_records=n_records, dim=dim, n_queries=n_queries, seed=seed, n_topics=n_topics,
                  topic_spread=topic_spread, gap=gap, noise=noise, max_answers=max_answers, zipf=zipf)
    if skipped:
        params["skipped"] = skipped
    if dense or duplicate_share:
        params.update(labels=labels, mean_answers=mean_answers, duplicate_share=duplicate_share, domain=domain,
                      duplicates=int(np.count_nonzero(copy_of >= 0)))
    return SyntheticData(
        ids=ids, vectors=vectors, topics=topics, payloads=payloads, documents=documents,
        query_ids=[f"q-{q:06d}" for q in range(n_queries)], queries=queries, answers=answers, grades=grades,
        splits=splits, timestamps=1_700_000_000.0 + np.arange(n_queries, dtype=np.float64) * 60.0,
        params=params, copy_of=copy_of, skipped=neg,
    )


def _skipped(vectors, queries, answers, k: int, block: int = 1024) -> list[list[int]]:
    """Per query, the ``k`` records it ranks highest (stored vectors) that it does not list."""
    out: list[list[int]] = []
    kk = min(vectors.shape[0], k + max(len(a) for a in answers))
    for b0 in range(0, queries.shape[0], block):
        s = queries[b0 : b0 + block] @ vectors.T
        top = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
        for j, row in enumerate(top):
            row = row[np.lexsort((row, -s[j, row]))]  # best first, ties by row
            listed = set(answers[b0 + j])
            out.append([int(r) for r in row if r not in listed][:k])
    return out


def _sparse_answers(rng, topics, n_topics, n_records, n_queries, max_answers, zipf):
    """1..max_answers answers per query: a Zipf-popular record and mates from its topic."""
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
    return answers, grades


#: dense labels: answers per query are log-normal with this σ (NFCorpus's counts are heavy-tailed)
_DENSE_SIGMA = 0.9
#: dense labels: a copy of an answer is listed too with this probability (else only the other copy)
_DENSE_KEEP_COPY = 0.7


def _dense_answers(rng, vectors, topics, n_topics, n_queries, mean_answers, zipf, copy_of):
    """Tens of graded answers per query: the records of a Zipf-popular topic closest to one of
    its records (the query's focus); the closest quarter graded 2, the others 1. A duplicate
    copy among them is kept with probability _DENSE_KEEP_COPY, so copies get different labels."""
    by_topic = _members(topics, n_topics)
    popularity = 1.0 / np.arange(1, n_topics + 1) ** zipf
    popularity /= popularity.sum()
    topic_of_query = rng.permutation(n_topics)[rng.choice(n_topics, size=n_queries, p=popularity)]
    mu = np.log(mean_answers) - _DENSE_SIGMA**2 / 2  # so that the mean is mean_answers
    sizes = np.maximum(1, np.rint(rng.lognormal(mu, _DENSE_SIGMA, size=n_queries))).astype(np.int64)
    is_copy = copy_of >= 0
    answers: list[list[int]] = []
    grades: list[list[float]] = []
    for q in range(n_queries):
        members = by_topic[topic_of_query[q]]
        if members.size == 0:  # an empty topic (tiny corpora): any record
            members = np.arange(vectors.shape[0])
        focus = vectors[members[rng.integers(members.size)]]
        sims = vectors[members] @ focus
        n_a = int(min(sizes[q], members.size))
        # closest first, ties (copies) by row, so the choice is deterministic
        order = np.lexsort((members, -sims))[:n_a]
        chosen = members[order]
        keep = ~is_copy[chosen] | (rng.random(n_a) < _DENSE_KEEP_COPY)
        keep[0] = True
        chosen = chosen[keep]
        n_top = max(1, chosen.size // 4)
        answers.append(chosen.tolist())
        grades.append([2.0] * n_top + [1.0] * (chosen.size - n_top))
    return answers, grades


def _make_duplicates(rng, vectors, topics, share) -> np.ndarray:
    """Overwrite ``share`` of the records (in place) with exact copies of others, in groups of 2
    or 3. Returns ``copy_of``: the source row of each copy, -1 for the others."""
    n = vectors.shape[0]
    copy_of = np.full(n, -1, dtype=np.int64)
    n_copies = int(round(share * n))
    if n_copies == 0:
        return copy_of
    rows = rng.permutation(n)
    pos, taken = 0, 0
    while taken < n_copies and pos + 1 < n:
        size = min(int(rng.integers(1, 3)), n_copies - taken)  # copies per source: 1 or 2
        src, dst = rows[pos], rows[pos + 1 : pos + 1 + size]
        vectors[dst] = vectors[src]
        topics[dst] = topics[src]
        copy_of[dst] = src
        pos += 1 + size
        taken += size
    return copy_of


def kmeans_labels(x: np.ndarray, k: int = 2, *, seed: int = 0, iters: int = 50) -> np.ndarray:
    """Deterministic k-means (k-means++ start, Lloyd iterations) on the rows of ``x``; the
    cluster of each row. Used for the out-of-distribution protocol of the NUDGE paper: fit and
    validate on one cluster of the training queries, test on the other."""
    x = np.asarray(x, dtype=np.float64)
    rng = np.random.default_rng(seed)
    centres = [x[rng.integers(x.shape[0])]]
    for _ in range(1, k):
        d2 = np.min([np.sum((x - c) ** 2, axis=1) for c in centres], axis=0)
        centres.append(x[rng.choice(x.shape[0], p=d2 / d2.sum())] if d2.sum() > 0 else x[rng.integers(x.shape[0])])
    c = np.stack(centres)
    labels = np.zeros(x.shape[0], dtype=np.int64)
    for _ in range(iters):
        d2 = (x * x).sum(1)[:, None] - 2 * x @ c.T + (c * c).sum(1)[None, :]
        new = np.argmin(d2, axis=1)
        if _ and np.array_equal(new, labels):
            break
        labels = new
        for j in range(k):
            if np.any(labels == j):
                c[j] = x[labels == j].mean(0)
    return labels


def _members(topics: np.ndarray, n_topics: int) -> list[np.ndarray]:
    order = np.argsort(topics, kind="stable")
    bounds = np.searchsorted(topics[order], np.arange(n_topics + 1))
    return [order[bounds[t] : bounds[t + 1]] for t in range(n_topics)]
