"""Click parameter types that refuse bad numbers and metric names as usage errors (exit code 2).

click's own ``float`` accepts ``nan`` and ``inf``, and ``FloatRange`` lets a NaN through (it compares
false with every bound), so every float option of nudge-sync uses :class:`FiniteFloat`.
"""

from __future__ import annotations

import math
from typing import Any

import click

from ..engine.names import name_problem
from ..engine.options import SyncOptions, parse_metric_spec


class FiniteFloat(click.ParamType):
    """A finite float within optional bounds; ``min_open`` / ``max_open`` exclude the bound itself."""

    name = "float"

    def __init__(self, min: float | None = None, max: float | None = None, *, min_open: bool = False,
                 max_open: bool = False) -> None:
        self.min, self.max, self.min_open, self.max_open = min, max, min_open, max_open

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, bool):
            self.fail(f"{value!r} is not a number", param, ctx)
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        too_low = self.min is not None and (number < self.min or self.min_open and number == self.min)
        too_high = self.max is not None and (number > self.max or self.max_open and number == self.max)
        if too_low or too_high:
            self.fail(f"{value!r} is not in {self._range()}", param, ctx)
        return number

    def _range(self) -> str:
        low = "(-inf" if self.min is None else f"{'(' if self.min_open else '['}{self.min:g}"
        high = "inf)" if self.max is None else f"{self.max:g}{')' if self.max_open else ']'}"
        return f"the range {low}, {high}"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "FLOAT"


class MetricSpec(click.ParamType):
    """A ranking metric such as ``ndcg@10`` (ndcg, recall, mrr or hit; K from 1 to MAX_K)."""

    name = "metric"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        problem, canonical = parse_metric_spec(value)
        if problem:
            self.fail(problem, param, ctx)
        return canonical

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "NAME@K"


class RunOption(click.ParamType):
    """A number for one field of ``SyncOptions``, refused (a usage error, exit code 2) by the
    options' own validation, so the command line never restates its ranges. ``others``: fields the
    check needs beside the defaults (γ's range depends on the method: the widest is checked here,
    the method's own at the run)."""

    def __init__(self, field: str, number: type, **others: Any) -> None:
        self.field, self.number, self.others = field, number, others
        self.name = "integer" if number is int else "float"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if self.number is int:
            parsed = click.INT.convert(value, param, ctx)
        else:
            parsed = FiniteFloat().convert(value, param, ctx)
        problem = SyncOptions.refusal(self.field, parsed, **self.others)
        if problem:
            self.fail(problem, param, ctx)
        return parsed

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return self.name.upper()


class CollectionName(click.ParamType):
    """A collection name given as an option (--collection, --log, --state): an empty or unusable
    name is a usage error, never "the default" (the engine's rule, ``engine.names``)."""

    name = "name"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        problem = name_problem(value)
        if problem:
            self.fail(f"{value!r}: a collection name that {problem} is not usable", param, ctx)
        return value
