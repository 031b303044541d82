"""What a stored vector is, given the state's entry for its record: one rule for run, rollback,
status and eval.

Given the entry ``o`` and the vector ``s`` the database holds now:

1. ``o.fp`` is set and ``fingerprint(s) == o.fp``: as recorded (nudged if ``o.nudged``);
2. ``s`` equals ``o``'s original vector (bit for bit, or within the collection's read-back
   tolerance where the database re-normalises what it stores): not nudged -- a rollback restored
   it, perhaps one that was killed before it could record so;
3. ``o`` is pending and ``s`` equals its target (within the tolerance): ours, written by
   ``o.target_run`` (nudged unless the target is the original, which rule 2 caught);
4. anything else: written by someone else. It becomes the record's new original and is never
   overwritten or reverted by nudge-sync.

A record the database no longer holds is ``VANISHED``; its entry is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from connectors import CollectionInfo

from .state import Original, fingerprint

NUDGED = "nudged"  #: the database holds a vector nudge-sync wrote (rule 1 nudged, rule 3)
RESTORED = "restored"  #: the database holds the original (rule 1 not nudged, rule 2)
ADOPTED = "adopted"  #: someone else wrote it (rule 4)
VANISHED = "vanished"  #: the record is gone


def tolerance_of(info: CollectionInfo) -> float:
    """The collection's read-back tolerance, relative to a vector's norm (0 = bit-exact)."""
    return float(info.round_trip_tolerance)


def same_vector(stored: np.ndarray, wanted: np.ndarray, tolerance: float) -> bool:
    """``stored`` is ``wanted`` as the database hands it back: bit for bit, or within
    ``tolerance`` x max(1, norm) per component on a database that re-normalises on write."""
    stored = np.asarray(stored, dtype=np.float32)
    wanted = np.asarray(wanted, dtype=np.float32)
    if stored.shape != wanted.shape:
        return False
    if stored.tobytes() == wanted.tobytes():
        return True
    if tolerance <= 0:
        return False
    scale = max(1.0, float(np.linalg.norm(wanted.astype(np.float64))))
    return float(np.max(np.abs(stored.astype(np.float64) - wanted), initial=0.0)) <= tolerance * scale


@dataclass
class Verdict:
    """The class of a stored vector and the entry the state should hold for it now."""

    kind: str  #: NUDGED | RESTORED | ADOPTED | VANISHED
    entry: Original | None  #: None when the record vanished
    #: the entry differs from what the state holds (a pending write settled, an adoption)
    changed: bool


def classify(o: Original, stored: np.ndarray | None, tolerance: float) -> Verdict:
    """The rules of the module docstring for entry ``o`` and the vector the database holds now."""
    if stored is None:
        return Verdict(VANISHED, None, True)
    fp = fingerprint(stored)
    if o.fp is not None and fp == o.fp:
        entry = Original(o.record_id, o.vector, o.fp, o.nudged, o.run)
        return Verdict(NUDGED if o.nudged else RESTORED, entry, o.target is not None)
    if same_vector(stored, o.vector, tolerance):
        entry = Original(o.record_id, o.vector, fp, False, o.target_run or o.run)
        return Verdict(RESTORED, entry, True)
    if o.target is not None and same_vector(stored, o.target, tolerance):
        return Verdict(NUDGED, Original(o.record_id, o.vector, fp, True, o.target_run), True)
    return Verdict(ADOPTED, adopted(o.record_id, stored), True)


def adopted(record_id, stored: np.ndarray) -> Original:
    """The entry of a record someone else wrote: what it holds now is its original."""
    vector = np.asarray(stored, dtype=np.float32).copy()
    return Original(record_id, vector, fingerprint(vector), False, None)
