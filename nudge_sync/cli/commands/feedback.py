"""`nudge-sync feedback add|import`: append labelled queries to the log collection."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import click
import numpy as np

import connectors
from connectors import LabelledQuery

from ...engine import importer, ops
from ...engine.errors import NothingToDo, RefusedInput
from ..failures import EXIT_CODES_HELP, handle_errors
from ..option_types import CollectionName, FiniteFloat
from ..params import MAX_BATCH, file_label, opened, store_options
from ..render import emit, human_feedback
from ..vector_input import read_query_vector


@click.group("feedback")
def feedback_group() -> None:
    """Append labelled queries to the log collection."""


@feedback_group.command("add", epilog=EXIT_CODES_HELP)
@store_options
@click.option("--log", "log_name", metavar="NAME", type=CollectionName(), help="Log collection (default <collection>_feedback).")
@click.option("--query-id", required=True, help="Stable id of the query (re-adding it replaces the entry).")
@click.option("--vector", "vector_text", help="Query embedding as comma-separated numbers.")
@click.option("--vector-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Query embedding from a .npy file or a text file of numbers.")
@click.option("--relevant", "relevant", multiple=True, required=True,
              help="A relevant record id (repeat for several). Digits-only ids are read as ints "
                   "on int-id collections.")
@click.option("--grade", "grades", type=FiniteFloat(0, min_open=True), multiple=True,
              help="Graded relevance (> 0), one per --relevant.")
@click.option("--split", type=click.Choice(["train", "val", "test"]), help="Pin the split (default: by id hash).")
@click.option("--timestamp", type=FiniteFloat(), help="Unix seconds (default: now).")
@click.pass_context
@handle_errors
def feedback_add(ctx: click.Context, store_uri: str, collection: str | None, log_name: str | None, query_id: str,
                 vector_text: str | None, vector_file: Path | None, relevant: tuple[str, ...],
                 grades: tuple[float, ...], split: str | None, timestamp: float | None) -> None:
    """Append one labelled query given on the command line."""
    vector = read_query_vector(vector_text, vector_file)
    if grades and len(grades) != len(relevant):
        raise RefusedInput(f"{len(grades)} --grade values for {len(relevant)} --relevant ids")
    # the entry rule before the database is opened: bad input never reaches it
    _command_line_entry(query_id, vector, list(relevant), grades, timestamp, split)
    with opened(store_uri, collection) as store:
        id_type = store.describe().id_type
        entry = _command_line_entry(query_id, vector, [_typed_id(r, id_type) for r in relevant], grades,
                                    time.time() if timestamp is None else timestamp, split)
        report = ops.add_feedback(store, [entry], log_name=log_name, source="feedback add")
    emit(ctx, report, human_feedback)


#: The command-line option each field of an entry comes from, for error messages.
_ADD_OPTIONS = {"query_id": "--query-id", "vector": "--vector", "relevant_ids": "--relevant", "grades": "--grade",
                "timestamp": "--timestamp", "split": "--split"}


def _command_line_entry(query_id: str, vector: np.ndarray, relevant: list[Any], grades: tuple[float, ...],
                        timestamp: float | None, split: str | None) -> LabelledQuery:
    try:
        return connectors.labelled_query(query_id, vector, relevant, list(grades) or None, timestamp, split)
    except connectors.InvalidEntry as exc:
        raise RefusedInput(f"{_ADD_OPTIONS.get(exc.field or '', 'feedback add')}: {exc}") from None


_INT_ID = re.compile(r"-?[0-9]+")


def _typed_id(text: str, id_type: str) -> connectors.RecordId:
    """A --relevant value as the collection's id type: ASCII digits are an int on int-id collections."""
    return int(text) if id_type == "int" and _INT_ID.fullmatch(text) else text


@feedback_group.command("import", epilog=EXIT_CODES_HELP)
@store_options
@click.option("--log", "log_name", metavar="NAME", type=CollectionName(), help="Log collection (default <collection>_feedback).")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--batch-size", type=click.IntRange(1, MAX_BATCH), default=1000, show_default=True,
              help="Entries per write request (a streamed import writes each batch all or nothing).")
@click.option("--stream", is_flag=True,
              help="Append batch by batch in bounded memory even if the file is small (files of over 50M query "
                   "floats always stream); an import that stops part-way is completed by running it again.")
@click.pass_context
@handle_errors
def feedback_import(ctx: click.Context, store_uri: str, collection: str | None, log_name: str | None,
                    path: Path, batch_size: int, stream: bool) -> None:
    """Append labelled queries from a JSONL, Parquet or NPZ file (see README: The labelled query log, In files).

    Every entry is checked before the first write. A file of up to 50M query floats (130,000 entries
    at 384-d) is then appended all or nothing; a larger one (or any with --stream) batch by batch in
    bounded memory: an import that stops part-way leaves the batches before it in the log, and the
    same import run again completes it without duplicating an entry (entries are keyed by query id)."""
    summary = importer.scan_log_file(path, file_label(path))  # every line checked before the database is opened
    if not summary.entries:
        raise NothingToDo(f"{file_label(path)} holds no labelled queries: nothing to import")
    with opened(store_uri, collection) as store:
        report = importer.import_feedback(store, summary, log_name=log_name, batch_size=batch_size, stream=stream)
    emit(ctx, report, human_feedback)
