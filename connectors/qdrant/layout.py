"""What a Qdrant collection looks like to the store: its vector layout (named vector, distance,
datatype), how record ids map to point ids, collection-name checks and the version filters of
conditional writes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from qdrant_client import models

from .._base import RecordId
from .._errors import InvalidURI, InvalidVectors, UnsupportedCollection
from .client import DISTANCE_TO_METRIC, _MAX_ID, _NAMESPACE


# -- conditional writes ------------------------------------------------------------------------------

#: Distinct versions in a write batch up to which each gets its own call (a one-condition filter);
#: above, one call carries a ``should`` of (id, version) pairs.
_VERSION_GROUPS = 8
#: Points per call with a ``should`` filter of (id, version) pairs.
_PAIRS_PER_CALL = 32


def _version_of(payload: Any, field: str, collection: str, point: Any) -> Any:
    value = (payload or {}).get(field)
    if value is not None and not isinstance(value, (str, int, float, bool)):
        raise UnsupportedCollection(f"point {point!r} of {collection!r}: version field {field!r} holds a "
                                    f"{type(value).__name__}; conditional writes need a str, int, float or bool")
    return value


def _version_condition(field: str, value: Any) -> Any:
    if value is None:
        return models.IsEmptyCondition(is_empty=models.PayloadField(key=field))
    if isinstance(value, float):
        return models.FieldCondition(key=field, range=models.Range(gte=value, lte=value))
    return models.FieldCondition(key=field, match=models.MatchValue(value=value))


def _version_filters(field: str, keys: list[Any], versions: list[Any]) -> Iterator[tuple[list[int], Any]]:
    """``(positions, update_filter)`` pairs covering one write batch (see the module docstring)."""
    groups: dict[tuple[str, Any], list[int]] = {}
    for j, v in enumerate(versions):
        groups.setdefault((type(v).__name__, v), []).append(j)
    if len(groups) <= _VERSION_GROUPS:
        for (_, value), positions in groups.items():
            yield positions, models.Filter(must=[_version_condition(field, value)])
        return
    # local mode checks every point of a call against every pair: keep the calls small
    for start in range(0, len(keys), _PAIRS_PER_CALL):
        part = range(start, min(len(keys), start + _PAIRS_PER_CALL))
        pairs = [models.Filter(must=[models.HasIdCondition(has_id=[keys[j]]), _version_condition(field, versions[j])])
                 for j in part]
        yield list(part), models.Filter(should=pairs)


# -- ids -------------------------------------------------------------------------------------------


def _point_id(i: RecordId) -> int | str | None:
    """The id Qdrant would store for ``i`` (canonical UUID text), or None if Qdrant cannot hold it."""
    if isinstance(i, int):
        return i if 0 <= i < _MAX_ID else None
    try:
        return str(uuid.UUID(i))
    except ValueError:
        return None


def _key(i: int | str) -> int | str:
    return i if isinstance(i, int) else str(uuid.UUID(str(i)))


def _impossible(ids: Sequence[RecordId]) -> str:
    shown = ", ".join(repr(i) for i in ids[:10])
    return (f"{len(ids)} id(s) can never exist in Qdrant, whose point ids are unsigned 64-bit ints or "
            f"UUIDs: {shown}")


# -- vector layout -----------------------------------------------------------------------------------


class _Layout:
    """The vector nudge-sync works on: its name (None = unnamed), dimension, distance, datatype."""

    def __init__(self, name: str | None, dim: int, distance: str, datatype: str):
        self.name, self.dim, self.distance, self.datatype = name, dim, distance, datatype

    def wrap(self, vec: list[float]) -> Any:
        return {self.name: vec} if self.name is not None else vec

    def unwrap(self, stored: Any) -> Any:
        if isinstance(stored, dict):
            return stored.get(self.name if self.name is not None else "")
        return stored

    @property
    def with_vectors(self) -> Any:
        return [self.name] if self.name is not None else True

    def expected(self, sent: np.ndarray) -> tuple[np.ndarray, float]:
        """What Qdrant should hand back for ``sent`` and the tolerance (0 = bit-exact)."""
        want, tol = sent, 0.0
        if self.distance == "Cosine":
            norms = np.linalg.norm(sent, axis=1, keepdims=True).astype(np.float32)  # float32, like Qdrant
            want = np.where(norms > 1e-30, sent / np.where(norms > 1e-30, norms, 1), sent).astype(np.float32)
            tol = 1e-6
        if self.datatype == "float16":
            want = want.astype(np.float16).astype(np.float32)
            tol = max(tol, 1e-3 * float(np.max(np.abs(want), initial=0.0)))
        return want, tol


def _pick_vector(collection: str, vectors: Any, wanted: str | None) -> _Layout:
    """The unnamed vector, the only named one, or the one ``vector=`` names; refuses ambiguity."""
    if isinstance(vectors, models.VectorParams):
        if wanted not in (None, ""):
            raise UnsupportedCollection(f"Qdrant collection {collection!r} has a single unnamed vector; "
                                        f"drop the vector={wanted!r} option")
        return _layout(collection, None, vectors)
    named = dict(vectors or {})
    if not named:
        raise UnsupportedCollection(f"Qdrant collection {collection!r} has no dense vectors (sparse vectors "
                                    "cannot be nudged)")
    if wanted in (None, ""):
        if len(named) > 1:
            raise UnsupportedCollection(f"Qdrant collection {collection!r} has {len(named)} named vectors "
                                        f"{sorted(named)}; choose one with the URI option vector=NAME")
        wanted = next(iter(named))
    if wanted not in named:
        raise UnsupportedCollection(f"Qdrant collection {collection!r} has no vector named {wanted!r}; "
                                    f"its named vectors are {sorted(named)}")
    return _layout(collection, wanted, named[wanted])


def _layout(collection: str, name: str | None, params: Any) -> _Layout:
    what = f"vector {name!r} of {collection!r}" if name is not None else f"the vector of {collection!r}"
    if getattr(params, "multivector_config", None) is not None:
        raise UnsupportedCollection(f"{what} is a multivector; NUDGE needs one vector per record")
    distance = getattr(params.distance, "value", str(params.distance))
    if distance not in DISTANCE_TO_METRIC:
        raise UnsupportedCollection(f"{what} uses distance {distance!r}; nudge-sync serves Cosine, Dot and Euclid")
    raw = getattr(params, "datatype", None)
    datatype = str(getattr(raw, "value", raw) or "float32")
    if datatype not in ("float32", "float16"):
        raise UnsupportedCollection(f"{what} stores {datatype} vectors, which cannot hold a nudged vector; "
                                    "nudge-sync writes float32 or float16 vectors only")
    return _Layout(name, int(params.size), distance, datatype)


def _float32(rows: Sequence[Any], dim: int) -> np.ndarray:
    if not rows:
        return np.zeros((0, dim), dtype=np.float32)
    return np.ascontiguousarray(np.asarray(rows, dtype=np.float32).reshape(len(rows), -1))


def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise InvalidVectors(f"k must be a non-negative int, got {k!r}")
    return int(k)




#: Characters Qdrant refuses in collection names (qdrant-client's local mode and the server alike).
_NAME_FORBIDDEN = ("<", ">", ":", '"', "/", "\\", "|", "?", "*", "\x00", "\x1f")


def _check_name(name: str, what: str) -> None:
    """Refuse a name Qdrant would refuse, before anything is written (as the other backends do)."""
    if (not isinstance(name, str) or name in ("", ".", "..") or len(name) > 255
            or any(c in name for c in _NAME_FORBIDDEN)):
        raise InvalidURI(f"{what} name {name!r} is not a valid Qdrant collection name (1-255 characters, none of "
                         f"{' '.join(_NAME_FORBIDDEN[:9])}, NUL or \\x1f)")


def _log_point(query_id: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, query_id))
