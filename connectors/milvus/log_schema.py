"""What a Milvus query log collection can hold, checked before anything is written to it.

Measured on Milvus 2.3.5 (the real standalone server) and Milvus Lite 3.2:

* a VARCHAR field holds at most its ``max_length`` -- in UTF-8 **bytes** on servers (683 three-byte
  characters break ``max_length=2048``), in characters on Milvus Lite. The logs nudge-sync creates key
  on ``query_id`` VARCHAR(2048);
* the dynamic field (where our logs keep ``relevant_ids``, ``grades``, ``timestamp`` and ``split``)
  and every JSON field hold at most 65,536 bytes of JSON on servers ("the length (65981) of dynamic
  field exceeds max length (65536)"); Milvus Lite stores 16 MiB without complaint;
* a declared field that is neither nullable nor defaulted must be given in every row.

nudge-sync applies the servers' rules on Milvus Lite too (bytes, 65,536), so a log written on Lite
can move to a server, and refuses an entry that breaks one before the first write, naming the
entry, the field, its size and the limit. A server rejects a row only after the rows before it
were written, so checking first is what keeps an import whole.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson  # pymilvus' own JSON encoder (a dependency of pymilvus): sizes match what it sends
from pymilvus import DataType

from .._base import LabelledQuery
from .._entry import short_repr
from .._errors import InvalidEntry, UnsupportedCollection

#: Bytes of JSON a Milvus server keeps in one JSON field or in a row's dynamic field.
JSON_FIELD_BYTES = 65_536
#: ``max_length`` of the ``query_id`` key of the logs nudge-sync creates.
QUERY_ID_BYTES = 2048


@dataclass
class LogSchema:
    """The parts of a log collection's schema that bound what an entry may hold."""

    pk: str
    vector: str
    dim: int
    pk_bytes: int | None
    dynamic: bool
    #: declared scalar fields: name -> (type, params, required)
    fields: dict[str, tuple[Any, Mapping[str, Any], bool]] = field(default_factory=dict)

    @classmethod
    def ours(cls, dim: int) -> LogSchema:
        """The schema nudge-sync gives a log it creates."""
        return cls("query_id", "vector", dim, QUERY_ID_BYTES, True)

    @classmethod
    def from_description(cls, name: str, desc: Mapping[str, Any]) -> LogSchema:
        fields = desc["fields"]
        pk = next((f for f in fields if f.get("is_primary")), None)
        dense = [f for f in fields if f.get("type") == DataType.FLOAT_VECTOR]
        if pk is None or len(dense) != 1:
            raise UnsupportedCollection(f"query log {name!r} must have a primary key (query_id) and exactly one "
                                        f"FLOAT_VECTOR field; it has {[f['name'] for f in dense]}")
        pk_bytes = _int(pk.get("params", {}).get("max_length")) if pk.get("type") == DataType.VARCHAR else None
        declared = {}
        for f in fields:
            if f is pk or f is dense[0]:
                continue
            required = not f.get("nullable") and f.get("default_value") is None
            declared[f["name"]] = (f.get("type"), {**f.get("params", {}), "element_type": f.get("element_type")},
                                   required)
        return cls(pk["name"], dense[0]["name"], int(dense[0]["params"]["dim"]), pk_bytes,
                   bool(desc.get("enable_dynamic_field")), declared)

    def check(self, log: str, index: int, q: LabelledQuery, row: Mapping[str, Any]) -> None:
        """InvalidEntry naming the entry, the field and the limit if ``row`` (entry ``index`` of an
        append) does not fit."""
        where = f"query log {log!r} entry {short_repr(q.query_id)}"

        def bad(message: str, field: str = "relevant_ids") -> InvalidEntry:
            return InvalidEntry(f"{where}: {message}", field, index)

        size = len(q.query_id.encode("utf-8"))
        if self.pk_bytes is not None and size > self.pk_bytes:
            raise bad(f"query_id takes {size:,} bytes (UTF-8); the log's key {self.pk!r} holds at most "
                      f"{self.pk_bytes:,} (its VARCHAR max_length; Milvus counts bytes)", "query_id")
        dynamic: dict[str, Any] = {}
        for name, value in row.items():
            if name in (self.pk, self.vector):
                continue
            if name in self.fields:
                problem = self._declared_problem(name, value)
                if problem:
                    raise bad(problem, name)
            elif self.dynamic:
                dynamic[name] = value
            else:
                raise bad(f"the log has no field {name!r} and no dynamic field to keep it in", name)
        missing = [n for n, (_, _, required) in self.fields.items() if required and n not in row]
        if missing:
            raise bad(f"the log's schema requires field(s) {missing}, which this entry lacks", missing[0])
        size = len(orjson.dumps(dynamic)) if dynamic else 0
        if size > JSON_FIELD_BYTES:
            raise bad(f"its fields take {size:,} bytes as JSON ({len(q.relevant_ids):,} relevant ids); Milvus keeps "
                      f"at most {JSON_FIELD_BYTES:,} bytes in a row's dynamic field: give it fewer relevant ids")

    def _declared_problem(self, name: str, value: Any) -> str:
        """What is wrong with ``value`` for the declared field ``name`` ("" if nothing)."""
        dtype, params, _ = self.fields[name]
        if dtype == DataType.VARCHAR:
            limit = _int(params.get("max_length"))
            if not isinstance(value, str):
                return f"the log's field {name!r} is a VARCHAR; got {short_repr(value)}"
            if limit is not None and len(value.encode("utf-8")) > limit:
                return (f"{name} takes {len(value.encode('utf-8')):,} bytes; the log's field {name!r} holds at most "
                        f"{limit:,} (VARCHAR max_length)")
        elif dtype == DataType.JSON:
            size = len(orjson.dumps(value))
            if size > JSON_FIELD_BYTES:
                return f"{name} takes {size:,} bytes as JSON; Milvus keeps at most {JSON_FIELD_BYTES:,} in a JSON field"
        elif dtype == DataType.ARRAY:
            capacity = _int(params.get("max_capacity"))
            if not isinstance(value, list) or (capacity is not None and len(value) > capacity):
                count = len(value) if isinstance(value, list) else "no"
                return f"{name} has {count} element(s); the log's ARRAY field {name!r} holds at most {capacity}"
            element = params.get("element_type")
            wanted = {DataType.VARCHAR: (str,), **dict.fromkeys(_INTS, (int,)), **dict.fromkeys(_FLOATS, (int, float))}
            types = wanted.get(element)
            if types and not all(isinstance(v, types) and not isinstance(v, bool) for v in value):
                return f"the log's field {name!r} is an ARRAY of {getattr(element, 'name', element)}; got {short_repr(value)}"
        elif dtype in _INTS and (isinstance(value, bool) or not isinstance(value, int)):
            return f"the log's field {name!r} is an integer field; got {short_repr(value)}"
        elif dtype in _FLOATS and (isinstance(value, bool) or not isinstance(value, (int, float))):
            return f"the log's field {name!r} is a number field; got {short_repr(value)}"
        return ""


_INTS = (DataType.INT8, DataType.INT16, DataType.INT32, DataType.INT64)
_FLOATS = (DataType.FLOAT, DataType.DOUBLE)


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
