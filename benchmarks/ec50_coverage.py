"""Coverage of the EC50's 95% CI in `slidepredict screen`: how often the planted EC50 lies inside it.

Each simulated compound is a planted four-parameter logistic (bottom 0.1, top 0.8, EC50 0.8 uM, Hill
1.5; the score of a well is a share of cells, so these are probabilities) sampled at D doses in a
3-fold series centred on the EC50, with R wells per dose and Gaussian well noise of SD ``--noise``.
The wells go through ``slidepredict.cells.screen.dose_response`` itself, which reports the interval;
the 1.96 x SE interval it used before is rebuilt from the same fit (same centre and standard error)
so both are scored on the same compounds. Coverage counts fits with a determined EC50; the share of
undetermined fits is reported beside it (a design that rarely pins the EC50 down is no design).

Usage::

    python benchmarks/ec50_coverage.py [--sims 2000] [--noise 0.05 0.1]
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import pandas as pd

from slidepredict.cells.screen import ScreenSettings, dose_response, four_pl

EC50, HILL, BOTTOM, TOP = 0.8, 1.5, 0.1, 0.8
DESIGNS = ((8, 3), (8, 2), (8, 1), (6, 2), (6, 1), (5, 1), (4, 2))  # (doses, wells per dose)


def simulate(doses: int, reps: int, noise: float, rng: np.random.Generator) -> pd.DataFrame:
    """One compound's wells, in the layout dose_response reads (with no control wells: none are needed)."""
    conc = EC50 * 3.0 ** (np.arange(doses) - (doses - 1) / 2)
    x = np.repeat(conc, reps)
    y = four_pl(np.log10(x), BOTTOM, TOP, np.log10(EC50), HILL) + rng.normal(0.0, noise, len(x))
    return pd.DataFrame({"COMPOUND": "X", "CONCENTRATION": x, "score": y, "is_control": False})


def coverage(doses: int, reps: int, noise: float, sims: int, seed: int) -> dict[str, float]:
    """Share of determined fits whose t (now) and z (before) intervals hold the planted EC50."""
    from scipy.stats import t

    rng = np.random.default_rng(seed)
    s = ScreenSettings(score_class="x", control="DMSO", min_doses=4)
    hit_t = hit_z = determined = no_ci = 0
    for _ in range(sims):
        fit = dose_response(simulate(doses, reps, noise, rng), s).iloc[0]
        if fit["fit"] != "ok":
            continue
        determined += 1
        lo, hi = fit["ec50_ci_low"], fit["ec50_ci_high"]
        if not np.isfinite(lo):
            no_ci += 1
            continue
        hit_t += lo <= EC50 <= hi
        centre = np.log10(fit["ec50"])
        se = (np.log10(hi) - centre) / t.ppf(0.975, doses * reps - 4)
        hit_z += 10 ** (centre - 1.96 * se) <= EC50 <= 10 ** (centre + 1.96 * se)
    with_ci = max(determined - no_ci, 1)
    return {"doses": doses, "wells_per_dose": reps, "noise_sd": noise, "dof": doses * reps - 4,
            "determined": determined / sims, "coverage_t": hit_t / with_ci, "coverage_z_before": hit_z / with_ci}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sims", type=int, default=2000)
    ap.add_argument("--noise", type=float, nargs="+", default=[0.05, 0.1])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    start = time.perf_counter()
    rows = [coverage(d, r, noise, args.sims, args.seed) for noise in args.noise for d, r in DESIGNS
            if d * r > 4]
    table = pd.DataFrame(rows)
    print(f"# {platform.processor() or platform.machine()}, {args.sims} compounds per row, "
          f"{time.perf_counter() - start:.0f} s")
    print(table.to_markdown(index=False, floatfmt=".3f") if _has_tabulate() else table.to_string(index=False))


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    main()
