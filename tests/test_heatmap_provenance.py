"""Heatmaps say which model drew them: held-out fold for cross-validated patients, in-sample marked, external drawn too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slidepredict.config import parse_config
from slidepredict.demo.synthetic import make_cohort
from slidepredict.heatmaps.api import DONE_FILE
from slidepredict.pipeline.run import run_workflow

TRAIN_N, EXTERNAL_N, FOLDS = 8, 4, 2


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`run` with crossval, final model, deploy and heatmaps on small generated slides (learning is not judged here)."""
    root = tmp_path_factory.mktemp("prov")
    for name, n, seed in (("train", TRAIN_N, 3), ("external", EXTERNAL_N, 4)):
        make_cohort(root / name, n_patients=n, seed=seed, width=768, height=512, mpp=1.0,
                    prefix="EXT" if name == "external" else "TRN")
    cohort = {k: str(root / "train" / v) for k, v in (("slides_dir", "slides"), ("clini_table", "clini.csv"),
                                                       ("slide_table", "slide.csv"))}
    cfg = parse_config({
        "output_dir": str(root / "run"),
        "cohort": cohort,
        "tiling": {"tile_um": 128, "tile_px": 64, "qc": False},
        "extract": {"encoder": "stain-texture", "workers": 0},
        "training": {"targets": ["MSI"], "folds": FOLDS, "steps": 12, "min_steps": 4, "restarts": 1, "val_every": 4,
                     "baseline": "none"},
        "deploy": {k: str(root / "external" / v) for k, v in (("slides_dir", "slides"), ("clini_table", "clini.csv"),
                                                               ("slide_table", "slide.csv"))},
        "heatmaps": {"max_slides": 0, "topk": 0, "thumb_px": 256},
        "report": {"enabled": True},
    }, "test configuration")
    run_workflow(cfg)
    return root / "run"


def _drawn(folder: Path) -> dict[str, dict]:
    """slide folder name -> its heatmaps.json."""
    return {d.name: json.loads((d / DONE_FILE).read_text()) for d in sorted(folder.iterdir()) if (d / DONE_FILE).is_file()}


def test_each_crossvalidated_patient_is_drawn_by_the_fold_that_held_it_out(run_dir: Path) -> None:
    splits = json.loads((run_dir / "crossval" / "MSI" / "splits.json").read_text())["splits"]
    fold_of = {p: k for k, s in enumerate(splits) for p in s["test"]}
    drawn = _drawn(run_dir / "heatmaps" / "MSI")
    assert len(drawn) == TRAIN_N
    for slide, info in drawn.items():
        by = info["drawn_by"]
        assert by["held_out"] is True and by["status"] == "held out", slide
        assert [m["name"] for m in by["models"]] == [f"fold-{fold_of[info['patient']]}"], slide
        assert Path(by["models"][0]["path"]).parent.name == f"fold-{fold_of[info['patient']]}"
        geo = json.loads((run_dir / "heatmaps" / "MSI" / slide / f"{slide}.geojson").read_text())
        assert geo["properties"]["slidepredict"]["drawn_by"]["models"] == by["models"]


def test_external_slides_are_drawn_by_the_fold_ensemble(run_dir: Path) -> None:
    drawn = _drawn(run_dir / "external" / "heatmaps" / "MSI")
    assert len(drawn) == EXTERNAL_N
    for info in drawn.values():
        assert info["drawn_by"]["held_out"] is True
        assert info["drawn_by"]["model"] == f"mean of {FOLDS} models"
        assert sorted(m["name"] for m in info["drawn_by"]["models"]) == [f"fold-{k}" for k in range(FOLDS)]


def test_final_model_maps_of_training_patients_say_in_sample(run_dir: Path, tmp_path: Path) -> None:
    import numpy as np

    from slidepredict.heatmaps import HeatmapSettings, run_heatmaps
    from slidepredict.heatmaps.models import load_heatmap_models
    from slidepredict.heatmaps.overlay import map_title
    from slidepredict.heatmaps.scores import TileScores

    train = run_dir.parent / "train"
    run = run_heatmaps(run_dir / "train" / "MSI", train / "slides", run_dir / "features", tmp_path / "hm",
                       HeatmapSettings(max_slides=2, topk=0, thumb_px=256), slide_table=train / "slide.csv")
    assert len(run.folders) == 2
    for folder in run.folders:
        info = json.loads((folder / DONE_FILE).read_text())
        assert info["drawn_by"]["status"] == "in-sample" and info["drawn_by"]["held_out"] is False
        assert info["drawn_by"]["model"] == "model MSI"
    drawer = load_heatmap_models(run_dir / "train" / "MSI").for_patient(info["patient"])
    scores = TileScores(coords=np.zeros((1, 2), dtype=np.int64), size0=64, attention=np.ones(1), attention_raw=np.ones(1),
                        class_scores=np.array([[0.3, 0.7]]), categories=["MSS", "MSI"], target="MSI",
                        probs=np.array([0.3, 0.7]), patient=info["patient"], drawer=drawer)
    title, _ = map_title("S", "attention", scores)
    assert title.endswith("prediction MSI = MSI (p = 0.70), in-sample (model MSI)")
    external = load_heatmap_models(run_dir / "train" / "MSI").for_patient("EXT-unknown")
    assert external.describe() == "held out (model MSI)"


def test_report_captions_say_held_out_or_in_sample(run_dir: Path) -> None:
    html = (run_dir / "report.html").read_text()
    assert "held out (fold-0)" in html or "held out (fold-1)" in html
    assert f"held out (mean of {FOLDS} models)" in html
    assert "is marked in-sample" in html


def test_drawn_probability_is_the_patient_out_of_fold_prediction(run_dir: Path) -> None:
    import pandas as pd

    preds = pd.read_csv(run_dir / "crossval" / "MSI" / "patient-preds.csv").set_index("PATIENT")
    drawn = _drawn(run_dir / "heatmaps" / "MSI")
    for info in drawn.values():
        row = preds.loc[info["patient"]]
        assert info["drawn_by"]["models"][0]["name"] == f"fold-{row.fold}"
        for cls, p in info["probabilities"].items():
            assert p == pytest.approx(row[f"MSI_{cls}"], abs=1e-5), (info["patient"], cls)


def test_without_a_slide_table_a_training_slide_is_never_called_held_out(run_dir: Path, tmp_path: Path) -> None:
    """Slide TRN-0001-1 is not patient TRN-0001: the models' own record of their slides decides (matching the
    slide's name with patient IDs called every training slide "held out (mean of 2 models)")."""
    import pandas as pd

    from slidepredict.heatmaps import HeatmapSettings, run_heatmaps

    train = run_dir.parent / "train"
    fold_of = pd.read_csv(run_dir / "crossval" / "MSI" / "patient-preds.csv").set_index("PATIENT").fold
    slide_of = pd.read_csv(train / "slide.csv").set_index("FILENAME").PATIENT
    settings = HeatmapSettings(max_slides=3, topk=0, thumb_px=128)
    run_heatmaps(run_dir / "crossval" / "MSI", train / "slides", run_dir / "features", tmp_path / "cv", settings)
    final = run_heatmaps(run_dir / "train" / "MSI", train / "slides", run_dir / "features", tmp_path / "final", settings)
    for slide, info in _drawn(tmp_path / "cv").items():
        patient = slide_of[next(f for f in slide_of.index if f.startswith(slide))]
        assert patient != slide and info["drawn_by"]["status"] == "held out"
        assert [m["name"] for m in info["drawn_by"]["models"]] == [f"fold-{fold_of[patient]}"]
    assert len(final.folders) == 3
    assert all(i["drawn_by"]["status"] == "in-sample" for i in _drawn(tmp_path / "final").values())
    ext = run_dir.parent / "external"
    run_heatmaps(run_dir / "crossval" / "MSI", ext / "slides", run_dir / "external" / "features", tmp_path / "ext", settings)
    assert all(i["drawn_by"]["model"] == f"mean of {FOLDS} models" and i["drawn_by"]["held_out"]
               for i in _drawn(tmp_path / "ext").values())


def test_models_that_do_not_record_their_slides_are_refused_without_a_slide_table(run_dir: Path, tmp_path: Path) -> None:
    import torch
    from typer.testing import CliRunner

    from slidepredict.cli import app

    payload = torch.load(run_dir / "train" / "MSI" / "model.ckpt", weights_only=True)
    payload["slidepredict"].pop("slides")  # as written before checkpoints recorded their slides
    old = tmp_path / "old.ckpt"
    torch.save(payload, old)
    train = run_dir.parent / "train"
    res = CliRunner().invoke(app, ["heatmaps", "--model", str(old), "--slides", str(train / "slides"), "--features",
                                   str(run_dir / "features"), "--out", str(tmp_path / "hm")])
    assert res.exit_code == 2 and not (tmp_path / "hm").exists()
    assert " ".join(res.output.split()) == (
        f"Error: {old} does not record which slides it was trained on (trained by slidepredict "
        f"{payload['slidepredict']['slidepredict_version']}), so whether a slide was held out cannot be told without "
        "its patient; pass --slides-table (the training cohort's slide table) or retrain with this version")
