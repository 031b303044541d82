"""A query embedding given on the command line: ``--vector 0.1,0.2,...`` or ``--vector-file``.

A file is told by its content, not its name: a ``.npy`` array (loaded without pickles), else a text
file of numbers. An ``.npz`` archive, a pickle, a complex, boolean or string array, or an array that
is not one vector is refused with what it is and what is expected; nothing ever suggests loading a
pickle.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

import connectors

from ..engine.errors import RefusedInput

_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"
#: The most bytes read from a --vector-file: a 65,536-d float64 .npy takes 512 KiB, as text about
#: 1.6 MiB; anything past this is not one query embedding (or is /dev/zero).
MAX_VECTOR_FILE_BYTES = 16 * 1024 * 1024


def read_query_vector(text: str | None, path: Path | None) -> np.ndarray:
    """The embedding as a 1-D float64 array (the entry rule then checks finiteness and zeros)."""
    if (text is None) == (path is None):
        raise RefusedInput("give the query embedding with exactly one of --vector or --vector-file")
    if path is not None:
        return _from_file(path)
    return _from_text(text or "", "--vector")


def _from_text(text: str, what: str) -> np.ndarray:
    parts = text.replace(",", " ").split()
    if not parts:
        raise RefusedInput(f"{what} holds no numbers; give the embedding as comma-separated numbers")
    try:
        return np.array([float(x) for x in parts], dtype=np.float64)
    except (ValueError, OverflowError):
        bad = next(x for x in parts if not _is_float(x))
        raise RefusedInput(f"{what}: {bad[:40]!r} is not a number; give the embedding as comma-separated "
                           "numbers") from None


def _is_float(x: str) -> bool:
    try:
        float(x)
    except (ValueError, OverflowError):
        return False
    return True


def _from_file(path: Path) -> np.ndarray:
    what = f"--vector-file {str(path)!r}"
    data = connectors.read_bounded(path, MAX_VECTOR_FILE_BYTES, what, RefusedInput)
    if data.startswith(_ZIP_MAGIC):
        raise RefusedInput(f"{what} is a zip archive (an .npz?); give one vector as a .npy array or a text file "
                           "of numbers")
    if data.startswith(_NPY_MAGIC):
        return _from_npy(data, what)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise RefusedInput(f"{what} is neither a .npy array nor a text file of numbers") from None
    return _from_text(text, what)


def _from_npy(data: bytes, what: str) -> np.ndarray:
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        why = "it holds Python objects (a pickle)" if "pickle" in str(exc) else "it is damaged or truncated"
        raise RefusedInput(f"{what} is not a numeric .npy array: {why}") from None
    if not isinstance(arr, np.ndarray):
        raise RefusedInput(f"{what} is not a single .npy array")
    if arr.dtype.kind not in "fiu":
        raise RefusedInput(f"{what} holds an array of {arr.dtype}; the embedding must be real numbers "
                           "(float or int)")
    if arr.ndim == 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 1:
        raise RefusedInput(f"{what} holds an array of shape {arr.shape}; expected one vector, shape (dimension,)")
    return arr.astype(np.float64)
