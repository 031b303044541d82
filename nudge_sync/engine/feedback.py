"""The labelled query log as one run sees it: validated, de-duplicated, split, and cleaned of
answers that no longer exist.

The split is a pure function of the query id (a salted hash), so a query never changes side
between nightly runs, whatever else arrives in the log. A log may carry its own split per entry
("train" / "val" / "test"), which wins. "test" entries never take part in fitting; ``eval`` uses them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from connectors import InvalidEntry, LabelledQuery, RecordId, check_entry

from .errors import NothingToDo, RefusedInput

SPLITS = ("train", "val", "test")


def hash_split(query_id: str, val_fraction: float, salt: str = "") -> str:
    """'val' for a stable pseudo-random ``val_fraction`` of query ids, 'train' for the rest."""
    digest = hashlib.blake2b(f"{salt}\x00{query_id}".encode(), digest_size=8).digest()
    u = int.from_bytes(digest, "big") / 2**64
    return "val" if u < val_fraction else "train"


@dataclass
class Feedback:
    """Labelled queries ready for a run. Row ``i`` is query ``query_ids[i]``."""

    query_ids: list[str]
    vectors: np.ndarray  #: float32 (n, d)
    answers: list[list[RecordId]]
    grades: list[list[float]]
    splits: list[str]
    watermark: float | None
    counts: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.query_ids)

    def rows(self, split: str | Sequence[str]) -> np.ndarray:
        wanted = {split} if isinstance(split, str) else set(split)
        return np.array([i for i, s in enumerate(self.splits) if s in wanted], dtype=np.int64)

    def referenced_ids(self) -> list[RecordId]:
        return list(dict.fromkeys(i for row in self.answers for i in row))

    def keep_known(self, fetch: Callable[[list[RecordId]], tuple[dict[RecordId, np.ndarray], list[RecordId]]],
                   ) -> tuple[Feedback, dict[RecordId, np.ndarray], list[RecordId]]:
        """``fetch(ids) -> ({id: stored vector}, missing ids)`` called once for every answer:
        ``(this feedback without the answers no longer stored, the answers' vectors, missing ids)``."""
        found, missing = fetch(self.referenced_ids())
        return self.drop_ids(missing), found, missing

    def drop_ids(self, missing: Iterable[RecordId]) -> Feedback:
        """Remove answers that are not in the collection; entries left without answers go too."""
        missing = set(missing)
        keep: list[int] = []
        answers, grades = [], []
        dropped_answers = 0
        for i, (row, g) in enumerate(zip(self.answers, self.grades)):
            pairs = [(a, w) for a, w in zip(row, g) if a not in missing]
            dropped_answers += len(row) - len(pairs)
            if pairs:
                keep.append(i)
                answers.append([a for a, _ in pairs])
                grades.append([w for _, w in pairs])
        counts = dict(self.counts)
        counts["answers_unknown_ids"] = counts.get("answers_unknown_ids", 0) + dropped_answers
        counts["queries_without_known_answers"] = counts.get("queries_without_known_answers", 0) + len(self) - len(keep)
        return Feedback(
            [self.query_ids[i] for i in keep], self.vectors[keep], answers, grades,
            [self.splits[i] for i in keep], self.watermark, counts,
        )


def validate_entry(e: LabelledQuery, dimension: int, source: str = "log") -> LabelledQuery:
    """The entry checked by the entry rule (``connectors/_entry.py``, the same rule for every way an
    entry enters) and against the collection's dimension; RefusedInput naming the query otherwise."""
    try:
        checked = check_entry(e)
    except InvalidEntry as exc:
        raise RefusedInput(f"{source}: query {getattr(e, 'query_id', None)!r}: {exc}") from None
    if checked.vector.shape[0] != dimension:
        raise RefusedInput(
            f"{source}: query {checked.query_id!r} has a vector of shape {checked.vector.shape}; "
            f"the collection's dimension is {dimension}"
        )
    return checked


def prepare_feedback(
    entries: Iterable[LabelledQuery],
    dimension: int,
    *,
    val_fraction: float = 0.2,
    salt: str = "",
    normalize_queries: bool = True,
    source: str = "log",
    since: float | None = None,
) -> Feedback:
    """Validate log entries against the collection and assign splits.

    Raises RefusedInput for entries nudge-sync cannot use (the entry rule: no answers, a zero or
    non-finite vector, a bad split, grade or timestamp; or the wrong dimension), naming the query
    id; NothingToDo for an empty log. A repeated query id keeps the newest entry (by timestamp,
    then order). ``since`` (the last run's watermark) only feeds the ``new_since_watermark`` count.
    """
    if not 0.0 < val_fraction < 1.0:
        raise RefusedInput(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    latest: dict[str, LabelledQuery] = {}
    total = 0
    for raw in entries:
        total += 1
        e = validate_entry(raw, dimension, source)
        prev = latest.get(e.query_id)
        if prev is None or (e.timestamp or 0.0) >= (prev.timestamp or 0.0):
            latest[e.query_id] = e
    if not latest:
        raise NothingToDo(f"{source} is empty: no labelled queries to use")

    ids = sorted(latest)  # deterministic order, whatever order the database returned
    vectors = np.stack([latest[q].vector for q in ids])
    if normalize_queries:  # the entry rule refused zero vectors
        vectors = (vectors / np.linalg.norm(vectors.astype(np.float64), axis=1, keepdims=True)).astype(np.float32)
    answers, grades, splits = [], [], []
    for q in ids:
        e = latest[q]
        row = list(dict.fromkeys(e.relevant_ids))  # a repeated answer counts once (first grade)
        g: dict[RecordId, float] = {}
        for a, w in zip(e.relevant_ids, e.grades or []):
            g.setdefault(a, float(w))
        answers.append(row)
        grades.append([g.get(a, 1.0) for a in row])
        splits.append(e.split or hash_split(q, val_fraction, salt))
    stamps = [e.timestamp for e in latest.values() if e.timestamp is not None]
    counts = {
        "log_entries": total,
        "new_since_watermark": sum(1 for e in latest.values() if since is None or (e.timestamp or 0.0) > since),
        "queries": len(ids),
        "duplicate_query_ids": total - len(ids),
    }
    return Feedback(ids, vectors, answers, grades, splits, max(stamps) if stamps else None, counts)
