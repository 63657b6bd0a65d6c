"""Screen statistics on a planted plate: robust z, SSMD, hits and a 4PL EC50 against what was planted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from slidepredict.cells.plate import PLATES
from slidepredict.cells.screen import (ScreenSettings, dose_response, four_pl, hits, normalise, plate_heatmap,
                                       well_scores)
from slidepredict.core.errors import CohortError

EC50, HILL = 0.8, 1.5  # uM


def planted_plate(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """96 wells, two images each: 16 DMSO wells, HIT and INERT at 8 doses x 2 wells, filler compounds."""
    rng = np.random.default_rng(seed)
    plate = PLATES[96]
    doses = 0.01 * 3.0 ** np.arange(8)  # 0.01 .. 21.9 uM
    layout = [("DMSO", 0.0)] * 16 + [("HIT", d) for d in doses for _ in range(2)] + \
             [("INERT", d) for d in doses for _ in range(2)] + [(f"C{i}", 1.0) for i in range(48)]
    bags, preds = [], []
    for w, (compound, dose) in enumerate(layout):
        well = plate.well_name(w // plate.cols, w % plate.cols)
        truth = float(four_pl(np.log10(dose), 0.1, 0.8, np.log10(EC50), HILL)) if compound == "HIT" else 0.1
        for i in range(2):
            image = f"{well}_s{i + 1}.tif"
            bags.append({"IMAGE": image, "PLATE": "P1", "WELL": well, "COMPOUND": compound, "CONCENTRATION": dose,
                         "BAG": image, "FILENAME": image[:-4]})
            p = float(np.clip(truth + rng.normal(0, 0.02), 0, 1))
            preds.append({"PATIENT": image, "MODE": "", "pred": "", "MODE_apoptosis": p, "MODE_alive": 1 - p})
    return pd.DataFrame(preds), pd.DataFrame(bags)


def test_planted_hit_and_its_ec50(tmp_path: Path) -> None:
    preds, bags = planted_plate()
    s = ScreenSettings(score_class="apoptosis", control="DMSO")
    wells = normalise(well_scores(preds, bags, "MODE", s))
    assert len(wells) == 96 and wells.n_bags.eq(2).all() and wells.is_control.sum() == 16
    controls = wells[wells.is_control].score.to_numpy()
    mad = 1.4826 * np.median(np.abs(controls - np.median(controls)))
    first = wells[~wells.is_control].iloc[0]
    assert first.robust_z == pytest.approx((first.score - np.median(controls)) / mad)
    table = hits(wells, s)
    top = table[table.hit]
    assert set(top.COMPOUND) == {"HIT"} and top.CONCENTRATION.min() <= 3 * EC50  # every dose above EC50 is a hit
    assert table[table.COMPOUND == "INERT"].hit.sum() == 0
    ssmd = table.set_index(["COMPOUND", "CONCENTRATION"]).loc[("HIT", table.CONCENTRATION.max()), "ssmd"]
    assert ssmd > 3  # SSMD > 3: a strong effect by Zhang's classification
    fits = dose_response(wells, s).set_index("COMPOUND")
    assert set(fits.index) == {"HIT", "INERT"}
    hit = fits.loc["HIT"]
    assert EC50 / 2 <= hit.ec50 <= 2 * EC50 and hit.ec50_ci_low < EC50 < hit.ec50_ci_high
    assert hit.hill == pytest.approx(HILL, rel=0.3) and hit.top == pytest.approx(0.8, abs=0.05)
    assert fits.loc["INERT", "fit"] == "EC50 undetermined (flat or too few doses)" and np.isnan(fits.loc["INERT", "ec50"])
    png = plate_heatmap(wells, 96, "robust_z", tmp_path / "plate.png", "P1 robust z")
    assert png.stat().st_size > 5000


def test_ssmd_is_against_each_plate_own_controls() -> None:
    """Two plates whose control levels differ by 0.3: a compound on the low plate is a strong hit by robust z, and
    its SSMD must say so too (pooling both plates' controls gave -0.30 where its own plate gives about +6.5)."""
    rng = np.random.default_rng(2)
    wells = []
    for plate, level in (("P1", 0.1), ("P2", 0.4)):
        wells += [{"PLATE": plate, "WELL": f"A{i + 1:02d}", "COMPOUND": "DMSO", "score": level + rng.normal(0, 0.02),
                   "is_control": True} for i in range(12)]
    wells += [{"PLATE": "P1", "WELL": f"B{i + 1:02d}", "COMPOUND": "X", "score": 0.3 + rng.normal(0, 0.02),
               "is_control": False} for i in range(4)]
    wells += [{"PLATE": p, "WELL": f"C{i + 1:02d}", "COMPOUND": "Y", "score": lvl + 0.1 + rng.normal(0, 0.02),
               "is_control": False} for p, lvl in (("P1", 0.1), ("P2", 0.4)) for i in range(3)]
    table = hits(normalise(pd.DataFrame(wells)), ScreenSettings(score_class="a", control="DMSO")).set_index("COMPOUND")
    frame = pd.DataFrame(wells)
    own = frame[(frame.PLATE == "P1") & frame.is_control].score
    x = frame[frame.COMPOUND == "X"].score
    expected = (x.mean() - own.mean()) / np.sqrt(x.var(ddof=1) + own.var(ddof=1))  # Zhang 2007, one plate
    assert table.loc["X", "robust_z"] > 5 and table.loc["X", "ssmd"] == pytest.approx(expected) and expected > 3
    assert table.loc["X", "plates"] == 1 and table.loc["Y", "plates"] == 2
    assert table.loc["Y", "ssmd"] > 2  # +0.1 over each plate's own controls, on both plates


def test_ec50_interval_uses_the_residual_degrees_of_freedom() -> None:
    """The Wald interval on log EC50 takes Student's t on n - 4 degrees (1.96 covered 70-79% with one well per
    dose, benchmarks/ec50_coverage.py); with no residual degree there is no interval."""
    from scipy.stats import t

    from slidepredict.cells.screen import ec50_interval

    lo, hi = ec50_interval(np.log10(0.8), 0.1, 6)
    assert np.log10(hi) - np.log10(0.8) == pytest.approx(t.ppf(0.975, 2) * 0.1) and t.ppf(0.975, 2) > 4
    assert np.log10(0.8) - np.log10(lo) == pytest.approx(np.log10(hi) - np.log10(0.8))
    assert all(np.isnan(ec50_interval(0.0, 0.1, 4)))
    x = 0.8 * 3.0 ** (np.arange(6) - 2.5)
    y = four_pl(np.log10(x), 0.1, 0.8, np.log10(EC50), HILL) + np.random.default_rng(0).normal(0, 0.03, 6)
    wells = pd.DataFrame({"COMPOUND": "X", "CONCENTRATION": x, "score": y, "is_control": False})
    fit = dose_response(wells, ScreenSettings(score_class="a", control="DMSO")).iloc[0]
    from scipy.optimize import curve_fit

    p, cov = curve_fit(four_pl, np.log10(x), y, p0=[y.min(), y.max(), np.median(np.log10(x)), 1.0],
                       bounds=([-np.inf, -np.inf, np.log10(x).min() - 2, -10], [np.inf, np.inf, np.log10(x).max() + 2, 10]))
    half = t.ppf(0.975, 2) * np.sqrt(cov[2, 2])
    assert fit.ec50_ci_low == pytest.approx(10 ** (p[2] - half), rel=1e-4)
    assert fit.ec50_ci_high == pytest.approx(10 ** (p[2] + half), rel=1e-4)


def test_screen_input_errors() -> None:
    preds, bags = planted_plate()
    with pytest.raises(CohortError) as e:
        well_scores(preds, bags, "MODE", ScreenSettings(score_class="necrosis", control="DMSO"))
    assert str(e.value) == "no class 'necrosis' among the predictions of 'MODE' (classes: apoptosis, alive); set --score-class"
    with pytest.raises(CohortError) as e:
        well_scores(preds, bags, "MODE", ScreenSettings(score_class="apoptosis", control="dmso"))
    assert str(e.value) == "control 'dmso' occurs in no well's CONTROL or COMPOUND; check --control"
    few = bags.assign(COMPOUND=["DMSO"] * 4 + list(bags.COMPOUND[4:].where(bags.COMPOUND[4:] != "DMSO", "X")))
    wells = well_scores(preds, few, "MODE", ScreenSettings(score_class="apoptosis", control="DMSO"))
    with pytest.raises(CohortError) as e:
        normalise(wells)
    assert str(e.value) == "plate 'P1' has 2 negative-control well(s); robust z needs at least 3"
    with pytest.raises(CohortError) as e:
        well_scores(preds.assign(PATIENT="other"), bags, "MODE", ScreenSettings(score_class="apoptosis", control="DMSO"))
    assert str(e.value) == "no predicted bag is in the bags table; give the bags.csv of the same cohort"


def test_screen_command_writes_everything_or_nothing(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from slidepredict.cli import app

    preds, bags = planted_plate()
    preds.to_csv(tmp_path / "preds.csv", index=False)
    bags.to_csv(tmp_path / "bags.csv", index=False)
    args = ["screen", str(tmp_path / "preds.csv"), "--bags", str(tmp_path / "bags.csv"), "--score-class", "apoptosis"]
    res = CliRunner().invoke(app, [*args, "--control", "DMSO", "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert res.output.strip() == f"96 wells (16 controls), 5 hit(s): HIT; tables in {tmp_path / 'out'}"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "dose-response.csv", "dose-response.png", "hits.csv", "plate-P1-robust_z.png", "plate-P1-score.png", "wells.csv"]
    bad = CliRunner().invoke(app, [*args, "--control", "PBS", "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and bad.output.strip() == "Error: control 'PBS' occurs in no well's CONTROL or COMPOUND; check --control"
    assert not (tmp_path / "bad").exists()


def test_report_shows_the_screen_and_escapes_its_names(tmp_path: Path) -> None:
    """The report's Screen section: hit table, fits, dose-response and plate maps; compound names escaped."""
    from slidepredict.cells.screen import run_screen
    from slidepredict.report import build_report

    preds, bags = planted_plate()
    bags["COMPOUND"] = bags.COMPOUND.replace("HIT", "<script>HIT</script>")
    preds.to_csv(tmp_path / "preds.csv", index=False)
    bags.to_csv(tmp_path / "bags.csv", index=False)
    run_screen(tmp_path / "preds.csv", tmp_path / "bags.csv", tmp_path / "run" / "hits",
               ScreenSettings(score_class="apoptosis", control="DMSO"), 96)
    html = build_report(tmp_path / "run").read_text()
    assert '<section id="screen">' in html and "Dose-response (4-parameter logistic" in html
    assert "<script>HIT" not in html and "&lt;script&gt;HIT&lt;/script&gt;" in html
    assert "(5 hit(s))" in html
    for name in ("dose-response.png", "plate-P1-score.png", "plate-P1-robust_z.png"):
        assert f'href="hits/{name}"' in html
    assert html.count("data:image/png;base64,") == 3
