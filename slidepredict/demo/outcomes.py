"""A continuous score and a survival outcome for generated cohorts, both driven by where the planted signal is.

``SIGNAL_SCORE`` is ten times the share of a patient's tissue that carries the signal, plus
noise; survival times are exponential with a hazard that rises with that share, censored
uniformly. They let benchmarks and tests train continuous and survival targets on the same
slides as the categorical one. A separate random stream (``seed`` + 7919) keeps the slides and
the categorical labels exactly as they were.
"""

from __future__ import annotations

import numpy as np

SCORE, TIME, EVENT = "SIGNAL_SCORE", "OS_MONTHS", "OS_EVENT"


def signal_share(slides: list) -> float:
    """Share of the tissue (all of a patient's slides) that carries the signal, from the ground-truth masks."""
    signal = sum(float(s.signal_mask.sum()) for s in slides)
    tissue = sum(float(s.tissue_mask.sum()) if s.tissue_mask is not None else float(s.signal_mask.size) for s in slides)
    return signal / max(tissue, 1.0)


def outcome_columns(slides_of: dict[str, list], seed: int) -> dict[str, list[str]]:
    """patient order of ``slides_of`` -> the score, time and event columns (as written to clini.csv)."""
    return outcomes_of_shares(np.array([signal_share(v) for v in slides_of.values()]), seed)


def outcomes_of_shares(share: np.ndarray, seed: int) -> dict[str, list[str]]:
    """Each patient's signal share -> the score, time and event columns (strings, as written to clini.csv)."""
    rng = np.random.default_rng(seed + 7919)
    z = share / max(float(share.max()), 1e-9)  # 0 (no signal) .. 1 (the patient with the most)
    score = 10.0 * share + rng.normal(0.0, 0.1, len(share))
    time = rng.exponential(60.0 * np.exp(-2.5 * (z - 0.5)))
    censor = rng.uniform(24.0, 240.0, len(share))
    return {SCORE: [f"{v:.4f}" for v in score], TIME: [f"{min(t, c):.2f}" for t, c in zip(time, censor)],
            EVENT: [str(int(t <= c)) for t, c in zip(time, censor)]}
