"""What a Milvus collection looks like to the store: primary key and vector field, filter expressions
over ids, page sizes, float32 rows and the fingerprints of the full-row write path."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pymilvus import DataType

from .._base import RecordId
from .._errors import UnsupportedCollection
from .client import INT64_RANGE, MAX_WINDOW, _PAGE_BYTES, _ROUND_TRIP_TYPES


# -- expressions -------------------------------------------------------------------------------------


def _literal(value: RecordId) -> str:
    """An expression literal for a key. Strings are escaped with the escapes every engine knows
    (Milvus Lite's parser accepts only \\" \\' \\\\ \\n \\r \\t)."""
    if isinstance(value, int):
        return str(value)
    escaped = (value.replace("\\", "\\\\").replace('"', '\\"')
               .replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t"))
    return f'"{escaped}"'


def _in(field_name: str, ids: Sequence[RecordId], negate: bool = False) -> str:
    return f"{field_name} {'not in' if negate else 'in'} [{', '.join(_literal(i) for i in ids)}]"


def _chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def _float32(rows: Sequence[Any], dim: int) -> np.ndarray:
    # pymilvus hands float32 values back as Python floats: the cast back is exact.
    if len(rows) == 0:
        return np.zeros((0, dim), dtype=np.float32)
    return np.ascontiguousarray(np.asarray(rows, dtype=np.float32).reshape(len(rows), -1))


def _rows_per_page(dim: int) -> int:
    return max(1, min(MAX_WINDOW, _PAGE_BYTES // (4 * max(dim, 1) + 64)))


# -- collection layout ---------------------------------------------------------------------------------


@dataclass
class _Layout:
    """What a user collection's schema and index say, checked once per store."""

    pk: str
    id_type: str  #: "int" | "str"
    vector: str
    dim: int
    metric: str  #: Milvus metric type: COSINE | IP | L2
    index_type: str
    dynamic: bool
    fields: list[dict[str, Any]]
    #: Manual partitions (None when there is only the default one or a partition key routes rows).
    partitions: list[str] | None = None
    other_vectors: list[str] = field(default_factory=list)

    @property
    def key_type(self) -> type:
        return int if self.id_type == "int" else str

    def valid(self, ids: Iterable[RecordId]) -> list[RecordId]:
        """The ids that can exist in this collection (right type; int64 range)."""
        kind = self.key_type
        return [i for i in ids if isinstance(i, kind) and (kind is str or INT64_RANGE[0] <= i < INT64_RANGE[1])]

    def rows_path_blockers(self) -> list[str]:
        """Fields a full-row rewrite cannot carry back unchanged (see the module docstring)."""
        return [f"{f['name']} ({DataType(f['type']).name})" for f in self.fields
                if f.get("type") not in _ROUND_TRIP_TYPES and not f.get("is_function_output")]

    def function_outputs(self) -> set[str]:
        return {f["name"] for f in self.fields if f.get("is_function_output")}


def _analyse(name: str, desc: Mapping[str, Any], wanted: str | None) -> tuple[str, str, dict[str, Any], list[str]]:
    """``(pk, id_type, vector field, other vector fields)`` of a described collection, or
    UnsupportedCollection saying what is wrong."""
    fields = list(desc.get("fields") or [])
    pks = [f for f in fields if f.get("is_primary")]
    if not pks:
        raise UnsupportedCollection(f"Milvus collection {name!r} has no primary key field")
    pk = pks[0]
    if desc.get("auto_id") or pk.get("auto_id"):
        raise UnsupportedCollection(
            f"Milvus collection {name!r} has an auto_id primary key ({pk['name']!r}): an upsert there generates "
            "new primary keys, so record ids (and the query log's answers) would change; nudge-sync refuses "
            "auto-id collections (copy the data into a collection with explicit ids)")
    if pk["type"] == DataType.INT64:
        id_type = "int"
    elif pk["type"] == DataType.VARCHAR:
        id_type = "str"
    else:
        raise UnsupportedCollection(f"Milvus collection {name!r}: primary key type {DataType(pk['type']).name} "
                                    "is not supported (INT64 or VARCHAR)")
    dense = [f for f in fields if f.get("type") == DataType.FLOAT_VECTOR]
    vectors = [f for f in fields if int(f.get("type", 0)) >= 100 and f.get("type") != DataType.UNKNOWN]
    listing = ", ".join(f"{f['name']} ({DataType(f['type']).name})" for f in vectors) or "none"
    if wanted is not None:
        match = [f for f in vectors if f["name"] == wanted]
        if not match:
            raise UnsupportedCollection(f"Milvus collection {name!r} has no vector field {wanted!r} (option "
                                        f"vector=); its vector fields: {listing}")
        if match[0]["type"] != DataType.FLOAT_VECTOR:
            raise UnsupportedCollection(f"Milvus collection {name!r}: field {wanted!r} is a "
                                        f"{DataType(match[0]['type']).name}; nudge-sync works on FLOAT_VECTOR fields")
        chosen = match[0]
    elif len(dense) == 1:
        chosen = dense[0]
    elif not dense:
        raise UnsupportedCollection(f"Milvus collection {name!r} has no FLOAT_VECTOR field; its vector fields: {listing}")
    else:
        names = ", ".join(f["name"] for f in dense)
        raise UnsupportedCollection(f"Milvus collection {name!r} has {len(dense)} FLOAT_VECTOR fields ({names}); "
                                    "choose one with the URI option vector=NAME")
    others = [f["name"] for f in vectors if f["name"] != chosen["name"]]
    return pk["name"], id_type, chosen, others




def _fingerprint(row: Mapping[str, Any], vector: str, skip: set[str]) -> str:
    """Everything of a row but the target vector, canonically serialised (sparse vectors have int
    keys, which JSON turns into strings on both sides alike)."""
    rest = {k: v for k, v in row.items() if k != vector and k not in skip}
    return json.dumps(rest, sort_keys=True, ensure_ascii=False, default=repr)


def _increasing(last: RecordId | None, keys: list[RecordId]) -> bool:
    """Keys strictly increasing, and above the previous page's last key."""
    prev = last
    for key in keys:
        if prev is not None and not key > prev:  # type: ignore[operator]
            return False
        prev = key
    return True


def _hit_id(hit: Mapping[str, Any], pk: str) -> RecordId:
    """A search hit's primary key: pymilvus names it after the field (Milvus Lite) or "id" (servers)."""
    value = getattr(hit, "id", None)
    if value is None:
        value = hit.get(pk, hit.get("id"))
    return value
