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

from ._base import LabelledQuery
from ._entry import short_repr
from ._errors import InvalidVectors, UnsupportedCollection

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

    def check(self, log: str, q: LabelledQuery, row: Mapping[str, Any]) -> None:
        """InvalidVectors naming the entry, the field and the limit if ``row`` does not fit."""
        where = f"query log {log!r} entry {short_repr(q.query_id)}"
        size = len(q.query_id.encode("utf-8"))
        if self.pk_bytes is not None and size > self.pk_bytes:
            raise InvalidVectors(f"{where}: query_id takes {size:,} bytes (UTF-8); the log's key {self.pk!r} holds at "
                                 f"most {self.pk_bytes:,} (its VARCHAR max_length; Milvus counts bytes)")
        dynamic: dict[str, Any] = {}
        for name, value in row.items():
            if name in (self.pk, self.vector):
                continue
            if name in self.fields:
                self._check_declared(where, name, value)
            elif self.dynamic:
                dynamic[name] = value
            else:
                raise InvalidVectors(f"{where}: the log has no field {name!r} and no dynamic field to keep it in")
        missing = [n for n, (_, _, required) in self.fields.items() if required and n not in row]
        if missing:
            raise InvalidVectors(f"{where}: the log's schema requires field(s) {missing}, which this entry lacks")
        size = len(orjson.dumps(dynamic)) if dynamic else 0
        if size > JSON_FIELD_BYTES:
            raise InvalidVectors(
                f"{where}: its fields take {size:,} bytes as JSON ({len(q.relevant_ids):,} relevant ids); Milvus "
                f"keeps at most {JSON_FIELD_BYTES:,} bytes in a row's dynamic field: give it fewer relevant ids")

    def _check_declared(self, where: str, name: str, value: Any) -> None:
        dtype, params, _ = self.fields[name]
        if dtype == DataType.VARCHAR:
            limit = _int(params.get("max_length"))
            if not isinstance(value, str):
                raise InvalidVectors(f"{where}: the log's field {name!r} is a VARCHAR; got {short_repr(value)}")
            if limit is not None and len(value.encode("utf-8")) > limit:
                raise InvalidVectors(f"{where}: {name} takes {len(value.encode('utf-8')):,} bytes; the log's field "
                                     f"{name!r} holds at most {limit:,} (VARCHAR max_length)")
        elif dtype == DataType.JSON:
            size = len(orjson.dumps(value))
            if size > JSON_FIELD_BYTES:
                raise InvalidVectors(f"{where}: {name} takes {size:,} bytes as JSON; Milvus keeps at most "
                                     f"{JSON_FIELD_BYTES:,} in a JSON field")
        elif dtype == DataType.ARRAY:
            capacity = _int(params.get("max_capacity"))
            if not isinstance(value, list) or (capacity is not None and len(value) > capacity):
                raise InvalidVectors(f"{where}: {name} has {len(value) if isinstance(value, list) else 'no'} "
                                     f"element(s); the log's ARRAY field {name!r} holds at most {capacity}")
            element = params.get("element_type")
            wanted = str if element == DataType.VARCHAR else int if element in _INTS else float if element in _FLOATS \
                else None
            if wanted is not None and not all(isinstance(v, wanted) and not isinstance(v, bool) for v in value):
                raise InvalidVectors(f"{where}: the log's field {name!r} is an ARRAY of {getattr(element, 'name', element)}; "
                                     f"got {short_repr(value)}")
        elif dtype in _INTS and (isinstance(value, bool) or not isinstance(value, int)):
            raise InvalidVectors(f"{where}: the log's field {name!r} is an integer field; got {short_repr(value)}")
        elif dtype in _FLOATS and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise InvalidVectors(f"{where}: the log's field {name!r} is a number field; got {short_repr(value)}")


_INTS = (DataType.INT8, DataType.INT16, DataType.INT32, DataType.INT64)
_FLOATS = (DataType.FLOAT, DataType.DOUBLE)


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
