"""γ search machinery for NUDGE-N and NUDGE-M (internal).

Only the records that answer a training query move, and each moving record's score against a
validation query is a closed-form function of γ:

* NUDGE-N, with φ = arccos(1 - γ/2):  s(φ) = a·cos φ + b·sin φ while φ < θ, then the constant
  c = q·Ĝ (saturation), where a = q·v, θ = angle(v, Ĝ) and b = q·u = (c - a·cos θ)/sin θ
  (u: the unit vector of span(v, G) orthogonal to v). With the reference's ρ < 0 skip rule such a
  record scores a until φ reaches θ and then jumps to c.
* NUDGE-M:  s(γ) = a + γ·c.

Everything else is a constant competitor, summarised per validation query by its top-K scores
(the validation context merged with the base records that never move). So after one pass of
matrix products (two products of n_val x moved x d, in blocks) every γ costs O(surviving pairs),
with no d and no corpus-size factor.

Pruning: the range is cut into pieces (N_PRUNE_SEGMENTS in φ, M_PRUNE_SEGMENTS in γ); for query
j and piece s, thr_js = K-th largest of {constant scores} ∪ {min over the piece of each moving
record's score}. A moving record whose max over every piece s is below thr_js always has K
records strictly above it, so it can never enter the top K and is dropped. Over one wide piece
every curve's minimum is low and the threshold weak: on the dense 200,000-record shape the whole
range kept 17.4 million (query, record) pairs, four pieces 0.5 million.

Ties: scores are compared as computed. Exact copies among the moving records (one product) or
among the constant ones tie to the bit and are ordered by id; a moving record and an exact copy
outside the table (validation context: another computation, possibly a database's) tie only up
to their float noise, which may order them either way.

The surviving (query, record) pairs form a *candidate table*: per validation query, a row of
elements (surviving movers + top-K constants, in id order), each with its curve parameters, id,
answer flag and grade. Every metric is computed from it under the shared tie rule (score desc,
id asc), the rule of :func:`nudge_sync.core.metrics.rank`: at one γ by ranking each row
(:class:`nudge_sync.core.curve.TableScorer`), and over the whole range as an exact piecewise-constant
curve (:func:`nudge_sync.core.curve.exact_curve`, fine mode).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .answers import Answers
from .curve import Sweep

#: Parity grid of the reference NUDGE-N (same float values as ``[0.02*x for x in range(25)]``).
PARITY_GRID_N = np.array([0.02 * x for x in range(25)], dtype=np.float64)

#: Work arrays (pairs x competitors, queries x records) are kept under this many elements.
CHUNK_ELEMS = 1 << 19
_ROUND = 12  # objective values are compared after rounding (they are sums of rationals)


# -- curve evaluation ----------------------------------------------------------------------------


def n_point(gamma: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """(cos φ, sin φ) for NUDGE-N's γ, computed as the reference does: 1-γ/2 and √(γ(4-γ))/2."""
    g = np.asarray(gamma, dtype=np.float64)
    return 1.0 - g / 2.0, np.sqrt(np.clip(g * (4.0 - g), 0.0, None)) / 2.0


def phi_to_gamma(phi: np.ndarray | float) -> np.ndarray:
    return 2.0 * (1.0 - np.cos(np.asarray(phi, dtype=np.float64)))


def gamma_to_phi(gamma: np.ndarray | float) -> np.ndarray:
    return np.arccos(np.clip(1.0 - np.asarray(gamma, dtype=np.float64) / 2.0, -1.0, 1.0))


@dataclass
class Candidates:
    """Per validation query, the elements that may enter its top-K (see module doc).

    N family: value = κ if cosθ >= cos φ else α cos φ + β sin φ + δ. Rotating records: δ = 0;
    skip-rule records: α = β = 0, δ = q·v; constants: θ = 0 (cosθ stored as 2, i.e. "saturated
    from the start") and κ = their score.
    M family: value = α + γ β (constants: β = 0).
    """

    family: str  # "n" or "m"
    n_val: int
    row_ptr: np.ndarray
    el_row: np.ndarray
    el_id: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    cos_theta: np.ndarray  # N only
    theta: np.ndarray  # N only (0 for constants)
    kappa: np.ndarray  # N only
    delta: np.ndarray  # N only
    jump: np.ndarray  # N only: ρ<0 records under the skip rule (piecewise constant)
    el_ans: np.ndarray
    el_grade: np.ndarray
    pair_el: np.ndarray  # element index of each answer element
    pair_row: np.ndarray
    n_answers: np.ndarray  # per query: distinct answers (all, not only candidates)
    answers: Answers  # kept validation answers (rows aligned with the table)
    t_hi: float  # end of the γ range in the family's parameter (φ for N, γ for M)
    _shape: dict | None = field(default=None, repr=False)

    @property
    def n_pairs(self) -> int:
        return int(self.pair_el.size)

    def values(self, idx: np.ndarray | None, point) -> np.ndarray:
        """Scores of elements ``idx`` (None: all) at ``point`` (N: (cos φ, sin φ) arrays aligned
        with ``idx`` or scalars; M: γ)."""
        sel = (lambda x: x) if idx is None else (lambda x: x[idx])
        if self.family == "m":
            return sel(self.alpha) + point * sel(self.beta)
        c, s = point
        lin = sel(self.alpha) * c + sel(self.beta) * s + sel(self.delta)
        return np.where(sel(self.cos_theta) >= c, sel(self.kappa), lin)

    def point_of_gamma(self, gamma: float):
        return n_point(gamma) if self.family == "n" else float(gamma)

    def point_of_t(self, t: np.ndarray):
        return (np.cos(t), np.sin(t)) if self.family == "n" else t

    def gamma_of_t(self, t):
        return phi_to_gamma(t) if self.family == "n" else np.asarray(t, dtype=np.float64)

    def subset(self, keep: np.ndarray) -> Candidates:
        """The same table with only the elements ``keep`` (rows, answers and range unchanged)."""
        fields = ("el_row", "el_id", "alpha", "beta", "cos_theta", "theta", "kappa", "delta", "jump", "el_ans",
                  "el_grade")
        part = {f: getattr(self, f)[keep] for f in fields}
        row_ptr = np.zeros(self.n_val + 1, dtype=np.int64)
        np.cumsum(np.bincount(part["el_row"], minlength=self.n_val), out=row_ptr[1:])
        pair_el = np.flatnonzero(part["el_ans"])
        return Candidates(family=self.family, n_val=self.n_val, row_ptr=row_ptr, pair_el=pair_el,
                          pair_row=part["el_row"][pair_el], n_answers=self.n_answers, answers=self.answers,
                          t_hi=self.t_hi, **part)

    def shape(self) -> dict[str, np.ndarray]:
        """NUDGE-N curve features, computed once: amplitude R and phase ψ of α cos t + β sin t
        (maximum R at t = ψ, minimum -R at ψ + π, both mod 2π) and the score just before the
        saturation angle (α cos θ + β sin θ + δ: κ for a rotating record, δ for a jumping one)."""
        if self._shape is None:
            psi = np.mod(np.arctan2(self.beta, self.alpha), 2 * np.pi)
            self._shape = {
                "R": np.hypot(self.alpha, self.beta), "psi": psi, "psi_min": np.mod(psi + np.pi, 2 * np.pi),
                "before_sat": self.alpha * np.cos(self.theta) + self.beta * np.sin(self.theta) + self.delta,
            }
        return self._shape

# -- objective ------------------------------------------------------------------------------------


@dataclass
class Objective:
    """The validation metric a γ search optimises: ``name@k`` (see :mod:`nudge_sync.core.metrics`)."""

    name: str
    k: int


# -- fine mode: pieces of the exact curve (nudge_sync.core.curve) ---------------------------------------


def plateaus(sw: Sweep) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge adjacent segments with equal value (or both not computed, NaN): (start t, end t,
    value) arrays."""
    edges = np.concatenate([[0.0], sw.breaks, [sw.t_hi]])
    v = np.round(sw.values, _ROUND)
    new = np.ones(v.size, dtype=bool)
    new[1:] = ~((v[1:] == v[:-1]) | (np.isnan(v[1:]) & np.isnan(v[:-1])))
    idx = np.flatnonzero(new)
    ends = np.append(idx[1:], v.size)
    return edges[idx], edges[ends], sw.values[idx]
