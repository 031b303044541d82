"""The plan step of a run (DESIGN.md section 3, steps 5-8): classify the state, take the base
vectors from the originals, build the validation context, fit NUDGE, apply the gates, and diff
the result against what is stored. Reads only; writes nothing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from connectors import RecordId

from .checks import check_base_norms
from .classify import ADOPTED, NUDGED, VANISHED, Verdict
from .fit import answers_of, curve, estimator, metric_k, normalized, validation_metrics
from .gates import gated
from .context import RunContext
from .inputs import Inputs
from .options import SyncOptions
from .state import Original
from .sticky import keep_gamma_in_force
from .verdicts import load_state, reembedded
from .writer import WriteItem
from .views import IdSpace, View, topk


@dataclass
class Plan:
    """What a run will write, and the state it planned from."""

    write_ids: list[RecordId]
    write_vectors: np.ndarray
    nudged_after: set[RecordId]  # records that hold a nudged vector once the plan is written
    restores: int  # writes that put an original back
    current: dict[RecordId, np.ndarray]  # what the database held when the run read it
    originals: dict[RecordId, Original]
    verdicts: dict[RecordId, Verdict]

    def items(self) -> list[WriteItem]:
        """What the writer writes: each record's target, what it held when planned, its entry."""
        return [WriteItem(i, t, self.current[i], self.originals.get(i), i in self.nudged_after)
                for i, t in zip(self.write_ids, self.write_vectors)]


def plan_run(ctx: RunContext, inputs: Inputs) -> Plan:
    """Step ``plan``: the run's plan; NothingToDo (the gated report attached) when validation does
    not improve enough or the run would rewrite too much of the collection. Fills the report's
    fit, validation and counts. Its progress counts the vectors streamed (exact context) or the
    queries searched."""
    val = len(inputs.feedback.rows("val"))
    with ctx.emit.step("plan", ctx.info.count if ctx.context_mode == "exact" else val) as step:
        try:
            return _plan(ctx, inputs)
        finally:
            step.update({k: v for k, v in inputs.counts.items() if k in PLAN_COUNTS})


#: The counts the plan step adds to the run's counts (its StepFinished carries them).
PLAN_COUNTS = ("state_records", "adopted_reembedded", "state_vanished", "pending_settled", "base_records", "moved",
               "to_write", "to_restore")


def _plan(ctx: RunContext, inputs: Inputs) -> Plan:
    store, info, opts, state, report = ctx.store, ctx.info, ctx.opts, ctx.state, ctx.report
    feedback, current, counts = inputs.feedback, inputs.current, inputs.counts

    # -- state: each entry classified against what is stored (adoption, settled writes) ----------
    _, verdicts = load_state(store, state, info, current, opts.batch_size, on_read=lambda: ctx.emit.probe("run.read"))
    originals = {i: v.entry for i, v in verdicts.items() if v.entry is not None}
    kinds = [v.kind for v in verdicts.values()]
    counts.update(state_records=len(originals), adopted_reembedded=len(reembedded(verdicts, state)),
                  state_vanished=kinds.count(VANISHED),
                  pending_settled=sum(v.changed and v.kind not in (ADOPTED, VANISHED) for v in verdicts.values()))
    if state.unverified:  # --skip-unverified: entries failing their checksums, left as they are now
        counts["skipped_unverified"] = len(state.unverified)

    # -- 5. base vectors from originals ----------------------------------------------------------
    train, val = feedback.rows("train"), feedback.rows("val")
    moving = list(dict.fromkeys(a for r in train for a in feedback.answers[r]))  # T: may move
    ids = IdSpace(moving)
    ids.add(feedback.referenced_ids())
    base = np.stack([(originals[i].vector if i in originals else current[i]) for i in moving]).astype(np.float32)
    check_base_norms(info, moving, base)
    moving_set = set(moving)
    restore = [i for i, v in verdicts.items() if v.kind == NUDGED and i not in moving_set]  # labels gone: restore
    counts["base_records"] = len(moving)

    # -- 6. validation context: records that will not move, as they will be after the run -------
    val_q = feedback.vectors[val]
    view = View(exclude=moving_set | set(restore), extra_ids=restore,
                extra_vectors=np.stack([originals[i].vector for i in restore]) if restore else None)
    mode = report.context_mode = ctx.context_mode

    def advanced(n: int) -> None:
        ctx.emit.advance(n)
        if mode == "exact":  # a page of the collection read
            ctx.emit.probe("run.read")

    (context,) = topk(store, val_q, max(opts.context_k, metric_k(opts.objective)), [view], ids, info.metric,
                      mode=mode, batch_size=opts.batch_size, on_batch=advanced)

    # -- 7. fit, gate -----------------------------------------------------------------------------
    def fit(options: SyncOptions):  # noqa: ANN202 - the core's NudgeN | NudgeM
        return estimator(options).fit(
            base, feedback.vectors[train], answers_of(feedback, train, ids),
            feedback.vectors[val], answers_of(feedback, val, ids),
            base_ids=np.arange(len(moving), dtype=np.int64), val_context=context,
        )

    est = fit(opts)
    # search mode on an approximate index: the γ in force stays unless clearly beaten (sticky.py)
    est = keep_gamma_in_force(est, lambda g: fit(replace(opts, gamma=g)), state.runs, opts, report)
    report.gamma = float(est.gamma_)
    report.objective = est.objective_  # parity mode optimises the reference's own criterion
    report.curve = curve(est.gammas_, est.validation_curve_, report.gamma)
    after = normalized(base)
    moved_rows = np.asarray(est.moved_ids_, dtype=np.int64)
    after[moved_rows] = est.moved_vectors_
    val_answers = answers_of(feedback, val, ids)
    report.validation = {
        "before": validation_metrics(val_q, normalized(base), context, val_answers, opts.objective),
        "after": validation_metrics(val_q, after, context, val_answers, opts.objective),
    }
    counts["moved"] = len(moved_rows)
    gain = float(est.val_score_) - float(est.val_score_before_)
    if not ctx.emit.gate("min_gain", gain > opts.min_gain, value=gain, threshold=opts.min_gain):
        gated(report, f"validation {opts.objective} would change by {gain:+.4f}, not above "
                     f"min_gain={opts.min_gain}: nothing written", counts)

    # -- 8. diff against what is stored -----------------------------------------------------------
    target = base.copy()
    target[moved_rows] = est.moved_vectors_
    nudged_after = {moving[r] for r in moved_rows}
    write_ids, write_vectors, restores = _diff(moving + restore, [*target, *(originals[i].vector for i in restore)],
                                               nudged_after, current, opts.tolerance, base.shape[1])
    counts["to_write"] = len(write_ids)
    counts["to_restore"] = restores
    share = len(write_ids) / max(info.count, 1)
    if not ctx.emit.gate("max_changed_fraction", share <= opts.max_changed_fraction, value=share,
                         threshold=opts.max_changed_fraction):
        gated(report, f"the run would rewrite {share:.1%} of the collection, above "
                     f"max_changed_fraction={opts.max_changed_fraction:.0%}", counts)
    return Plan(write_ids, write_vectors, nudged_after, restores, current, originals, verdicts)


def _diff(ids: Sequence[RecordId], targets: Sequence[np.ndarray], nudged_after: set[RecordId],
          current: dict[RecordId, np.ndarray], tolerance: float,
          dimension: int) -> tuple[list[RecordId], np.ndarray, int]:
    """The records whose stored vector differs from its target by more than ``tolerance``:
    ``(ids, targets, how many of them are restores)``."""
    write_ids: list[RecordId] = []
    vecs: list[np.ndarray] = []
    restores = 0
    for i, t in zip(ids, targets):
        if np.max(np.abs(current[i].astype(np.float64) - t)) > tolerance:
            write_ids.append(i)
            vecs.append(t)
            restores += i not in nudged_after
    arr = np.stack(vecs).astype(np.float32) if vecs else np.zeros((0, dimension), np.float32)
    return write_ids, arr, restores
