"""Deployment: fold ensembles, prediction-only cohorts, refusals that leave nothing behind, overlap warnings."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from fakecohort import make_feature_cohort, set_attrs
from slidepredict.cohort import build_cohort
from slidepredict.deploy import EnsembleError, deploy, expand_models, member_names
from slidepredict.core.errors import CohortError, ConfigError, FeatureFileError
from slidepredict.training import CheckpointError, TrainSettings, crossval, load_checkpoint, load_model, predict_cohort
from slidepredict.training.checkpoint import save_checkpoint

DIM = 16
SPEC = {"encoder": "fake-encoder", "encoder_hash": "fakehash0", "dim": DIM, "tile_size_um": 256.0, "tile_size_px": 224,
        "stain_norm": "none"}  # what make_feature_cohort writes
TINY = TrainSettings(model_hparams={"hidden": 16, "attention_dim": 8, "dropout": 0.0}, steps=8, val_every=4, min_steps=0, patience=2,
                   lr=3e-3, batch_size=4, bag_size=32)


@pytest.fixture(scope="module")
def cv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-fold crossval run on a generated feature cohort (seconds: tiny head, few steps)."""
    root = tmp_path_factory.mktemp("train")
    clini, slides, feats, _ = make_feature_cohort(root, n_patients=16, n_tiles=24, dim=DIM, seed=0, strength=4.0)
    crossval(build_cohort(feats, slides, clini, target="TARGET"), root / "cv", TINY, folds=2)
    return root / "cv"


@pytest.fixture(scope="module")
def external(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    clini, slides, feats, _ = make_feature_cohort(
        tmp_path_factory.mktemp("ext"), n_patients=10, n_tiles=24, dim=DIM, seed=1, strength=4.0, shift=0.2
    )
    return clini, slides, feats


def _ckpts(cv: Path) -> list[Path]:
    return [(cv / f"fold-{k}" / "model.ckpt").resolve() for k in range(2)]


def test_ensemble_is_mean_of_member_probabilities(cv: Path, external, tmp_path: Path) -> None:
    clini, slides, feats = external
    res = deploy([cv], feats, tmp_path / "out", clini=clini, slide_table=slides, n_bootstrap=50, device="cpu")

    ens = pd.read_csv(res.preds, dtype={"PATIENT": str})
    assert list(ens.columns) == ["PATIENT", "TARGET", "pred", "TARGET_neg", "TARGET_pos", "model", "in_training"]
    assert set(ens["model"]) == {"ensemble"} and len(ens) == 10
    cohort = build_cohort(feats, slides, clini, target="TARGET", categories=["neg", "pos"])
    members = []
    for name, ckpt in zip(["fold-0", "fold-1"], _ckpts(cv)):
        want = predict_cohort(load_model(ckpt), cohort)
        got = pd.read_csv(tmp_path / "out" / name / "patient-preds.csv", dtype={"PATIENT": str})
        assert res.member_preds[name] == tmp_path / "out" / name / "patient-preds.csv"
        assert got["PATIENT"].tolist() == want["PATIENT"].tolist() and set(got["model"]) == {name}
        np.testing.assert_allclose(got[["TARGET_neg", "TARGET_pos"]], want[["TARGET_neg", "TARGET_pos"]], rtol=1e-9)
        members.append(want[["TARGET_neg", "TARGET_pos"]].to_numpy())
    mean = np.mean(members, axis=0)
    np.testing.assert_allclose(ens[["TARGET_neg", "TARGET_pos"]].to_numpy(), mean, rtol=1e-9)
    assert ens["pred"].tolist() == [["neg", "pos"][i] for i in mean.argmax(1)]
    assert ens["TARGET"].tolist() == want["TARGET"].tolist()

    assert res.headline is not None and res.headline["metric"] == "auroc" and res.headline["n"] == 10
    assert (tmp_path / "out" / "stats" / "metrics.csv").is_file()
    summary = json.loads(res.summary.read_text())
    assert summary["ensemble"] == "mean of class probabilities"
    assert [m["name"] for m in summary["models"]] == ["fold-0", "fold-1"]
    assert summary["training_overlap"] == {} and summary["stats"]["headline"]["value"] == res.headline["value"]


def test_single_checkpoint_and_label_column_override(cv: Path, external, tmp_path: Path) -> None:
    clini, slides, feats = external
    renamed = tmp_path / "truth.csv"
    pd.read_csv(clini).rename(columns={"TARGET": "truth"}).to_csv(renamed, index=False)
    res = deploy([_ckpts(cv)[1]], feats, tmp_path / "out", clini=renamed, slide_table=slides,
                 target="truth", n_bootstrap=0)
    ens = pd.read_csv(res.preds)
    member = pd.read_csv(res.member_preds["fold-1"])
    pd.testing.assert_frame_equal(ens, member)
    assert set(ens["model"]) == {"fold-1"} and "TARGET" in ens.columns and "truth" not in ens.columns


def test_prediction_only_with_and_without_slide_table(cv: Path, external, tmp_path: Path) -> None:
    _, slides, feats = external
    with_table = deploy([cv], feats, tmp_path / "a", slide_table=slides)
    df = pd.read_csv(with_table.preds, dtype={"PATIENT": str})
    assert list(df.columns) == ["PATIENT", "pred", "TARGET_neg", "TARGET_pos", "model", "in_training"]
    assert df["PATIENT"].tolist() == sorted(pd.read_csv(slides)["PATIENT"])
    assert with_table.headline is None and with_table.stats_dir is None and not (tmp_path / "a" / "stats").exists()

    by_file = deploy([cv], feats, tmp_path / "b")
    df_b = pd.read_csv(by_file.preds, dtype={"PATIENT": str})
    assert df_b["PATIENT"].tolist() == sorted(p.stem for p in feats.glob("*.h5"))
    np.testing.assert_allclose(df_b["TARGET_pos"], df["TARGET_pos"])  # one slide per patient: same bags
    assert json.loads(by_file.summary.read_text())["labelled"] is False


def test_encoder_mismatch_is_refused_before_any_output(cv: Path, tmp_path: Path) -> None:
    clini, slides, feats, _ = make_feature_cohort(tmp_path, n_patients=4, n_tiles=8, dim=DIM, seed=2,
                                                  encoder="other-encoder", encoder_hash="otherhash")
    out = tmp_path / "out"
    with pytest.raises(FeatureFileError) as err:
        deploy([cv], feats, out, clini=clini, slide_table=slides)
    assert str(err.value) == (
        f"features in {feats / 'PAT-02-0000-S0.h5'} come from encoder 'other-encoder' (hash otherhash) but model "
        f"{cv / 'fold-0' / 'model.ckpt'} was trained on 'fake-encoder' (hash fakehash0); extract features with encoder 'fake-encoder' "
        "at 256.0 um tiles"
    )
    assert not out.exists()


@pytest.mark.parametrize(
    ("attr", "value", "message"),
    [
        ("tile_size_um", 512.0, "use 512.0 um tiles but model {model} was trained on 256.0 um tiles; "
                                "extract features with encoder 'fake-encoder' at 256.0 um tiles"),
        ("tile_size_px", 256, "use tile_size_px=256 but model {model} was trained on tile_size_px=224; "
                              "re-extract them with --tile-px 224"),
        ("stain_norm", "macenko", "use stain_norm='macenko' but model {model} was trained on stain_norm='none'; "
                                  "re-extract them with --stain-norm none"),
    ],
)
def test_features_extracted_with_other_settings_are_refused(cv: Path, tmp_path: Path, attr: str, value: object,
                                                            message: str) -> None:
    _, slides, feats, _ = make_feature_cohort(tmp_path, n_patients=4, n_tiles=8, dim=DIM, seed=3)
    set_attrs(feats.glob("*.h5"), **{attr: value})
    with pytest.raises(FeatureFileError) as err:
        deploy([cv], feats, tmp_path / "out", slide_table=slides)
    model = cv / "fold-0" / "model.ckpt"
    assert str(err.value) == f"features in {feats / 'PAT-03-0000-S0.h5'} " + message.format(model=model)
    assert not (tmp_path / "out").exists()


def test_settings_not_recorded_are_not_compared(cv: Path, tmp_path: Path) -> None:
    """Checkpoints from before stain_norm and tile_size_px were compared, and files of other tools, still deploy."""
    old = _variant(cv, tmp_path, "old", features={k: v for k, v in SPEC.items() if k not in ("tile_size_px", "stain_norm")})
    _, slides, feats, _ = make_feature_cohort(tmp_path, n_patients=4, n_tiles=8, dim=DIM, seed=3)
    set_attrs(feats.glob("*.h5"), stain_norm="macenko", tile_size_px=256)
    assert deploy([old], feats, tmp_path / "a", slide_table=slides).n_patients == 4
    set_attrs(feats.glob("*.h5"), stain_norm=None, tile_size_px=None)
    assert deploy([cv], feats, tmp_path / "b", slide_table=slides).n_patients == 4


def test_training_patients_overlap_is_warned_and_recorded(cv: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    train_root = cv.parent
    with caplog.at_level(logging.WARNING, logger="slidepredict"):
        res = deploy([cv], train_root / "features", tmp_path / "out", clini=train_root / "clini.csv",
                     slide_table=train_root / "slides.csv", n_bootstrap=0)
    trained = {name: sorted(load_checkpoint(p)[1].patients) for name, p in zip(["fold-0", "fold-1"], _ckpts(cv))}
    assert res.overlap == trained and all(len(v) == 8 for v in trained.values())
    first = trained["fold-0"]
    assert (f"8 of 16 deployment patients were used to train model fold-0 ({', '.join(first[:5])}, ...); "
            "their predictions are not an external validation") in caplog.text
    summary = json.loads(res.summary.read_text())
    assert summary["training_overlap"]["fold-1"] == {"count": 8, "patients": trained["fold-1"]}
    # every patient was seen by one of the folds: nothing is external, so no statistics
    preds = pd.read_csv(res.preds)
    assert preds["in_training"].all() and res.headline is None
    assert res.stats_skipped == ("every one of the 16 deployment patients was used to train the models; "
                                 "there is nothing to validate on")
    # fold-0 alone: its 8 training patients are left out, the other 8 are scored
    alone = deploy([_ckpts(cv)[0]], train_root / "features", tmp_path / "one", clini=train_root / "clini.csv",
                   slide_table=train_root / "slides.csv", n_bootstrap=0)
    marked = pd.read_csv(alone.preds)
    assert sorted(marked.loc[marked.in_training, "PATIENT"]) == trained["fold-0"]
    assert alone.headline is not None and alone.headline["n"] == 8
    from slidepredict.report import build_report

    html = build_report(tmp_path / "one").read_text()
    assert "8 patients the models trained on" in html and "left out of the statistics" in html


def _variant(cv: Path, tmp_path: Path, name: str, **changes: object) -> Path:
    state, meta = load_checkpoint(_ckpts(cv)[0])
    return save_checkpoint(tmp_path / name / "model.ckpt", state, replace(meta, **changes), {})


@pytest.mark.parametrize(
    ("changes", "what"),
    [
        ({"categories": ["neg", "mid"]}, "classes (neg, pos vs neg, mid)"),
        ({"target": "KRAS"}, "targets (TARGET vs KRAS)"),
        ({"features": {"encoder": "uni", "encoder_hash": "h", "dim": DIM, "tile_size_um": 256.0, "tile_size_px": 224}},
         "features ('fake-encoder' (hash fakehash0, 16 dims, 256.0 um / 224 px tiles, stain_norm='none') vs "
         "'uni' (hash h, 16 dims, 256.0 um / 224 px tiles, stain_norm unknown))"),
        ({"features": {**SPEC, "stain_norm": "macenko"}},
         "features ('fake-encoder' (hash fakehash0, 16 dims, 256.0 um / 224 px tiles, stain_norm='none') vs "
         "'fake-encoder' (hash fakehash0, 16 dims, 256.0 um / 224 px tiles, stain_norm='macenko'))"),
    ],
)
def test_checkpoints_that_do_not_belong_together_are_refused(cv: Path, external, tmp_path: Path, changes, what) -> None:
    other = _variant(cv, tmp_path, "other", **changes)
    with pytest.raises(EnsembleError) as err:
        deploy([cv, other], external[2], tmp_path / "out")
    assert str(err.value) == (
        f"cannot ensemble {_ckpts(cv)[0]} and {other.resolve()}: they have different {what}; deploy them in separate runs"
    )
    assert not (tmp_path / "out").exists()


def test_model_paths_and_names(cv: Path, tmp_path: Path) -> None:
    assert expand_models([cv]) == _ckpts(cv)
    assert expand_models([cv / "fold-1", cv]) == [_ckpts(cv)[1], _ckpts(cv)[0]]  # duplicates kept once
    assert member_names([Path("a/fold-0/model.ckpt"), Path("b/fold-0/model.ckpt"), Path("x/final.ckpt")]) == [
        "0-fold-0", "1-fold-0", "final"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError) as err:
        expand_models([tmp_path / "empty"])
    assert str(err.value) == (
        f"no model checkpoints in folder {tmp_path / 'empty'} (expected fold-*/model.ckpt from `slidepredict crossval` "
        "or model.ckpt from `slidepredict train`); pass the .ckpt file itself"
    )
    with pytest.raises(CheckpointError, match="^model checkpoint not found: .*missing.ckpt$"):
        deploy([tmp_path / "missing.ckpt"], tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_single_class_labels_keep_predictions_and_skip_stats(cv: Path, external, tmp_path: Path) -> None:
    clini, slides, feats = external
    only_pos = tmp_path / "pos.csv"
    df = pd.read_csv(clini)
    df[df["TARGET"] == "pos"].to_csv(only_pos, index=False)
    res = deploy([cv], feats, tmp_path / "out", clini=only_pos, slide_table=slides)
    assert len(pd.read_csv(res.preds)) == 5 and res.headline is None
    assert "no patients of class 'neg'" in (res.stats_skipped or "")
    assert json.loads(res.summary.read_text())["stats_skipped"] == res.stats_skipped


def test_missing_target_column_is_a_cohort_error(cv: Path, external, tmp_path: Path) -> None:
    clini, slides, feats = external
    with pytest.raises(CohortError, match="^target column 'KRAS' not in clini.csv"):
        deploy([cv], feats, tmp_path / "out", clini=clini, slide_table=slides, target="KRAS")
    assert not (tmp_path / "out").exists()


def test_cli_prints_headline_and_one_line_errors(cv: Path, external, tmp_path: Path) -> None:
    from slidepredict.cli import app

    clini, slides, feats = external
    runner = CliRunner()
    ok = runner.invoke(app, ["deploy", "--model", str(cv), "--features", str(feats), "--clini", str(clini),
                             "--slides-table", str(slides), "--out", str(tmp_path / "out"), "--n-bootstrap", "30"])
    assert ok.exit_code == 0, ok.output
    assert f"Predicted 10 patients with 2 model(s): {tmp_path / 'out' / 'patient-preds.csv'}" in ok.output
    assert "TARGET (pos, n=10): AUROC " in ok.output
    bad = runner.invoke(app, ["deploy", "--model", str(tmp_path / "nope.ckpt"), "--features", str(feats),
                              "--out", str(tmp_path / "o2")])
    assert bad.exit_code == 2
    assert f"Error: model checkpoint not found: {tmp_path / 'nope.ckpt'}" in bad.output
    assert not (tmp_path / "o2").exists()


def test_positive_class_for_the_headline(cv: Path, external, tmp_path: Path) -> None:
    clini, slides, feats = external
    res = deploy([cv], feats, tmp_path / "out", clini=clini, slide_table=slides, n_bootstrap=0, positive="neg")
    assert res.headline is not None and res.headline["class"] == "neg"
    with pytest.raises(ConfigError) as err:
        deploy([cv], feats, tmp_path / "o2", clini=clini, slide_table=slides, positive="MSI")
    assert str(err.value) == "--positive 'MSI' is not a class of the model (classes: neg, pos)"
    assert not (tmp_path / "o2").exists()


def test_cuda_requested_without_a_gpu(cv: Path, external, tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible")
    with pytest.raises(ConfigError) as err:
        deploy([cv], external[2], tmp_path / "out", device="cuda")
    assert str(err.value) == "--device cuda: no CUDA GPU is visible to torch; use --device cpu or auto"
    assert not (tmp_path / "out").exists()
