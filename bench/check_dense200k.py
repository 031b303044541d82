"""One fit each of parity mode and the default (``step_alpha="auto"``) on the dense 200k shape's full
split: wall and CPU seconds, peak resident memory of each fit (the default's fit was killed there
before, issue 21), and the default's choice. Slow (minutes per fit on a shared machine).

    PYTHONPATH=. python -m bench.check_dense200k
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from bench.bench_core import _reset_peak, _status_mb, load_shape, save_shape


def main() -> None:
    from nudge_sync import NudgeN, ValidationContext

    with tempfile.TemporaryDirectory() as tmp:
        save_shape("dense200k", Path(tmp))
        X, sp = load_shape(Path(tmp))
    (tq, ta), (vq, va) = sp["t"], sp["v"]
    base = np.unique(ta.ids)
    ctx = ValidationContext.from_corpus(vq, X, 10, exclude=base)
    print(f"dense 200k: {X.shape[0]:,} records, {base.size:,} answer training queries, {vq.shape[0]:,} validation queries")
    for label, kw in (("parity", {}), ("default (auto)", dict(gamma_search="fine", objective="ndcg@10"))):
        reset = _reset_peak()
        t, c = time.perf_counter(), time.process_time()
        est = NudgeN(**kw).fit(X[base], tq, ta, vq, va, base_ids=base, val_context=ctx)
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        peak = f"{_status_mb('VmHWM'):,.0f} MB" if reset else "n/a (peak reset not permitted)"
        print(f"{label}: {wall:.1f} s wall, {cpu:.1f} s CPU, peak RSS {peak}; {est.variant_} α={est.step_alpha_:g} "
              f"γ={est.gamma_:.4f} val NDCG@10 {100 * est.val_score_:.2f}", flush=True)


if __name__ == "__main__":
    main()
