"""The HTML report: content, escaping of user text, atomic write, and a real browser render."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from slidepredict.core.errors import SlidePredictError
from slidepredict.report import build_report

EVIL = '<script>alert("x")</script>'


def _make_run(root: Path) -> Path:
    run = root / "run"
    (run / "stats").mkdir(parents=True)
    (run / "heatmaps" / "slide1").mkdir(parents=True)
    pd.DataFrame({
        "target": ["MSI", "MSI"], "class": ["MSI", "MSI"], "group": ["pooled", "pooled"],
        "metric": ["auroc", "auprc"], "value": [0.91, 0.85], "ci_low": [0.8, 0.7], "ci_high": [0.97, 0.95], "n": [40, 40],
    }).to_csv(run / "stats" / "metrics.csv", index=False)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(run / "stats" / "roc-MSI.png")
    Image.fromarray(np.full((300, 400, 3), (200, 60, 60), np.uint8)).save(run / "heatmaps" / "slide1" / "slide1_heatmap_MSI.png")
    (run / "heatmaps" / "slide1" / "slide1.geojson").write_text('{"type": "FeatureCollection", "features": []}')
    pd.DataFrame({"PATIENT": [EVIL, "P2"], "MSI": ["MSI", "MSS"], "pred": ["MSI", "MSS"],
                  "MSI_MSS": [0.2, 0.7], "MSI_MSI": [0.8, 0.3]}).to_csv(run / "patient-preds.csv", index=False)
    (run / "cohort.json").write_text(json.dumps({
        "patients": 2, "slides": 2, "tiles": 1234,
        "dropped": [{"reason": "no features", "count": 1, "examples": [EVIL]}],
    }))
    return run


def test_report_has_every_section_and_escapes_user_text(tmp_path: Path) -> None:
    run = _make_run(tmp_path)
    page = build_report(run)
    assert page == run / "report.html"
    html = page.read_text()
    for title in ("Cohort", "Performance", "Patient predictions", "Heatmaps"):
        assert f"<h2>{title}</h2>" in html
    assert EVIL not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert 'href="heatmaps/slide1/slide1.geojson"' in html
    assert html.count("data:image/png;base64,") == 2
    assert not list(run.glob("*.partial"))


def test_report_on_empty_folder_is_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(SlidePredictError) as err:
        build_report(tmp_path / "empty")
    assert str(err.value) == (
        f"{tmp_path / 'empty'}: nothing to report (no metrics.csv, patient-preds.csv, heatmaps, cohort.json, hits.csv "
        "or clusters.csv found); run crossval/deploy/stats/heatmaps (or screen/clusters) first"
    )
    assert list((tmp_path / "empty").iterdir()) == []


def test_report_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(SlidePredictError, match="run folder not found: "):
        build_report(tmp_path / "nope")


def chromium_binary() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def render_in_chromium(page: Path, png: Path) -> str:
    """Screenshot ``page`` headless; returns Chromium's log, which carries console messages."""
    browser = chromium_binary()
    if browser is None:
        pytest.skip("Chromium is not installed (apt-get install chromium); .ci/run installs it")
    profile = png.parent / "chromium-profile"
    cmd = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--window-size=1280,2000",
        f"--screenshot={png}", page.resolve().as_uri(),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert png.is_file(), out.stderr[-2000:]
    return out.stderr


def test_report_renders_in_chromium_without_console_errors(tmp_path: Path) -> None:
    run = _make_run(tmp_path)
    page = build_report(run)
    shot = tmp_path / "shot.png"
    log = render_in_chromium(page, shot)
    console = [line for line in log.splitlines() if "CONSOLE" in line]
    assert console == []
    img = np.asarray(Image.open(shot).convert("RGB")).astype(int).reshape(-1, 3)
    drawn = (np.abs(img - img[-1]).sum(axis=1) > 30).mean()  # pixels unlike the page background
    assert drawn > 0.05, f"page looks blank ({drawn:.3f} of pixels drawn)"


def test_console_error_detection_catches_a_broken_page(tmp_path: Path) -> None:
    """Negative control: the check above would notice a script error."""
    page = tmp_path / "broken.html"
    page.write_text("<html><body><script>undefinedFunction();</script>text</body></html>")
    log = render_in_chromium(page, tmp_path / "broken.png")
    assert any("CONSOLE" in line and "undefinedFunction" in line for line in log.splitlines())


def test_metrics_table_shows_the_spread_of_the_folds_next_to_the_pooled_ci() -> None:
    from slidepredict.report._sections import metrics_summary

    rows = [{"target": "MSI", "class": "MSI", "group": g, "metric": "auroc", "threshold": "", "value": v,
             "ci_low": v - 0.1, "ci_high": min(1.0, v + 0.1), "n": 10} for g, v in
            (("fold-0", 0.7), ("fold-1", 0.9), ("pooled", 0.8))]
    columns, table = metrics_summary(pd.DataFrame(rows))
    spread = [r for r in table if r[2] == "mean ± SD of groups"]
    assert len(spread) == 1 and spread[0][columns.index("AUROC (95% CI)")] == "0.800 ± 0.100 (2 groups)"
    assert len(spread[0]) == len(columns)
