"""Training, cross-validation, checkpoints and inference on generated cohorts and the real feature bags."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from fakecohort import make_feature_cohort
from slidepredict.cli import app
from slidepredict.cohort import build_cohort
from slidepredict.core.errors import CohortError, FeatureFileError
from slidepredict.featurefile import FeatureSpec
from slidepredict.mil import list_mil
from slidepredict.training import (
    TrainSettings, crossval, fit, load_checkpoint, load_model, pooled_auroc, predict_bag, predict_cohort, train_final,
)

FAST = dict(steps=6, val_every=3, min_steps=0, patience=2, lr=2e-3, batch_size=4, bag_size=16)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models train faster on one thread, and other tests share the two cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    clini, slides, feats, _ = make_feature_cohort(tmp_path_factory.mktemp("tiny"), n_patients=12, n_tiles=20, dim=16)
    return clini, slides, feats


def _cli(*args: object) -> object:
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.mark.slow
@pytest.mark.parametrize("name", list_mil())
def test_each_head_finds_planted_signal(tmp_path: Path, name: str) -> None:
    """Smoke test per head (20% of tiles, strong enough to show in patient means too): every head trains and
    predicts; attention points at the planted tiles. Whether heads learn weak, localised signals is judged
    in test_validity.py and benchmarks/validity.py, on cohorts where patient means give nothing away."""
    clini, slides, feats, truth = make_feature_cohort(tmp_path, n_patients=36, n_tiles=48, dim=32, signal_fraction=0.2, strength=4.0)
    cohort = build_cohort(feats, slides, clini, target="TARGET")
    config = TrainSettings(model=name, steps=60, val_every=10, min_steps=60, lr=2e-3, batch_size=4, bag_size=32)
    preds = crossval(cohort, tmp_path / "cv", config, folds=3)
    assert pooled_auroc(preds, "TARGET", cohort.categories) >= 0.9
    if name != "attention":
        return
    scores, planted = [], []
    for k in range(3):
        model = load_model(tmp_path / "cv" / f"fold-{k}" / "model.ckpt")
        for patient in preds.loc[(preds.fold == k) & (preds.TARGET == "pos"), "PATIENT"]:
            bag, coords = cohort.load_bag(patient)
            _, attention, _ = predict_bag(model, bag, coords)
            scores.append(attention)
            planted.append(truth.planted[truth.slides[patient][0]])
    assert roc_auc_score(np.concatenate(planted), np.concatenate(scores)) >= 0.9


def test_crossval_layout_and_rerun_skips_done_folds(tiny: tuple[Path, Path, Path], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    clini, slides, feats = tiny
    cohort = build_cohort(feats, slides, clini, target="TARGET")
    out = tmp_path / "cv"
    preds = crossval(cohort, out, TrainSettings(**FAST), folds=2)
    assert list(preds.columns) == ["PATIENT", "TARGET", "pred", "TARGET_neg", "TARGET_pos", "fold"]
    assert sorted(preds.PATIENT) == cohort.patients and set(preds.fold) == {0, 1}
    assert np.allclose(preds[["TARGET_neg", "TARGET_pos"]].sum(axis=1), 1.0)
    assert sorted(p.name for p in out.iterdir()) == [
        "cohort.json", "fold-0", "fold-1", "operating-point.json", "patient-preds.csv", "splits.json", "train-config.json"]
    assert sorted(p.name for p in (out / "fold-0").iterdir()) == ["model.ckpt", "patient-preds.csv"]
    splits_before = (out / "splits.json").read_text()
    for k in range(2):  # test folds never took part in training or model selection
        _, meta = load_checkpoint(out / f"fold-{k}" / "model.ckpt")
        assert not meta.patients & set(preds.loc[preds.fold == k, "PATIENT"])

    import sys

    crossval_module = sys.modules["slidepredict.training.folds"]  # the package's `crossval` is the function
    calls: list[str] = []
    real_fit = crossval_module.fit
    monkeypatch.setattr(crossval_module, "fit", lambda c, cfg, path, description: calls.append(str(path)) or real_fit(c, cfg, path, description))
    (out / "fold-1" / "patient-preds.csv").unlink()
    again = crossval(cohort, out, TrainSettings(**FAST), folds=2)
    assert calls == [str(out / "fold-1" / "model.ckpt")]
    assert (out / "splits.json").read_text() == splits_before
    pd.testing.assert_frame_equal(again.sort_values("PATIENT").reset_index(drop=True),
                                  preds.sort_values("PATIENT").reset_index(drop=True), atol=1e-6)
    with pytest.raises(CohortError, match=r"splits.json holds 2 folds over 12 patients, but this run has 3 folds"):
        crossval(cohort, out, TrainSettings(**FAST), folds=3)
    with pytest.raises(Exception, match=r"was trained with steps=6, this run asks for steps=8"):
        crossval(cohort, out, TrainSettings(**{**FAST, "steps": 8}), folds=2)


def test_training_is_deterministic(tiny: tuple[Path, Path, Path], tmp_path: Path) -> None:
    clini, slides, feats = tiny
    cohort = build_cohort(feats, slides, clini, target="TARGET")
    states = [load_checkpoint(fit(cohort, TrainSettings(**FAST), tmp_path / f"{i}.ckpt").path)[0] for i in range(2)]
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    other = load_checkpoint(fit(cohort, TrainSettings(**{**FAST, "seed": 1}), tmp_path / "s1.ckpt").path)[0]
    assert not all(torch.equal(states[0][k], other[k]) for k in other)


def test_checkpoint_metadata_loading_and_feature_checks(tiny: tuple[Path, Path, Path], tmp_path: Path) -> None:
    import lightning

    from slidepredict.training.module import LitMIL

    clini, slides, feats = tiny
    cohort = build_cohort(feats, slides, clini, target="TARGET")
    ckpt = train_final(cohort, tmp_path / "final", TrainSettings(**FAST))
    raw = torch.load(ckpt, weights_only=True)
    meta = raw["slidepredict"]
    assert meta["target"] == "TARGET" and meta["categories"] == ["neg", "pos"]
    assert meta["features"] == {"encoder": "fake-encoder", "encoder_hash": "fakehash0", "dim": 16,
                                "tile_size_um": 256.0, "tile_size_px": 224, "stain_norm": "none"}
    assert sorted(meta["train_patients"] + meta["val_patients"]) == cohort.patients
    assert meta["model"] == "attention" and meta["model_hparams"]["hidden"] == 256
    assert meta["slidepredict_version"] and raw["pytorch-lightning_version"] == lightning.__version__
    assert isinstance(LitMIL.load_from_checkpoint(ckpt, weights_only=True), LitMIL)

    loaded = load_model(ckpt)
    assert not loaded.model.training
    bag, coords = cohort.load_bag(cohort.patients[0])
    probs, attention, tiles = predict_bag(loaded, bag.astype(np.float16), coords)
    assert probs.shape == (2,) and attention.shape == (20,) and tiles.shape == (20, 2)
    assert np.isclose(probs.sum(), 1) and np.isclose(attention.sum(), 1) and np.allclose(tiles.sum(1), 1)
    df = predict_cohort(loaded, cohort)
    assert np.allclose(df.loc[0, ["TARGET_neg", "TARGET_pos"]].to_numpy(float), probs, atol=1e-5)

    with pytest.raises(FeatureFileError) as e:
        loaded.check_features(FeatureSpec("uni", "abc", 16, 256.0, 224), "x.h5")
    assert str(e.value) == (
        f"features in x.h5 come from encoder 'uni' (hash abc) but model {ckpt} was trained on 'fake-encoder' "
        "(hash fakehash0); extract features with encoder 'fake-encoder' at 256.0 um tiles"
    )
    with pytest.raises(FeatureFileError, match=rf"^features in x.h5 have 512 dimensions but model {re.escape(str(ckpt))} expects 16"):
        loaded.check_features(FeatureSpec("unknown", "unknown", 512), "x.h5")
    with pytest.raises(FeatureFileError, match=rf"^features in x.h5 use 128.0 um tiles but model {re.escape(str(ckpt))} was trained on 256.0"):
        loaded.check_features(FeatureSpec("fake-encoder", "fakehash0", 16, 128.0, 224), "x.h5")
    assert train_final(cohort, tmp_path / "final", TrainSettings(**FAST)) == ckpt  # complete: skipped


def test_cli_two_targets_multiclass(tmp_path: Path) -> None:
    clini, slides, feats, _ = make_feature_cohort(tmp_path, n_patients=18, n_tiles=12, dim=8, categories=("a", "b", "c"))
    ct = pd.read_csv(clini)
    ct.assign(SECOND=np.where(ct.TARGET == "a", "x", "y")).to_csv(clini, index=False)
    out = tmp_path / "out"
    res = _cli("crossval", "--clini", clini, "--slides-table", slides, "--features", feats, "--target", "TARGET",
               "--target", "SECOND", "--out", out, "--folds", "2", "--steps", "4", "--val-every", "2", "--min-steps", "0", "--bag-size", "8", "--batch-size", "4")
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "TARGET: 2-fold cross-validation of 18 patients, pooled AUROC" in text
    multi = pd.read_csv(out / "TARGET" / "patient-preds.csv")
    onehot = (multi.TARGET.to_numpy()[:, None] == np.array(["a", "b", "c"])).astype(float)
    brier = ((multi[["TARGET_a", "TARGET_b", "TARGET_c"]].to_numpy() - onehot) ** 2).sum(1).mean()
    assert f"multi-class Brier {brier:.3f}" in text  # beside the AUROC: probabilities, not only the ranking
    second = pd.read_csv(out / "SECOND" / "patient-preds.csv")
    from sklearn.metrics import brier_score_loss

    assert f"Brier {brier_score_loss(second.SECOND == 'y', second.SECOND_y):.3f}, calibration error" in text
    assert list(multi.columns) == ["PATIENT", "TARGET", "pred", "TARGET_a", "TARGET_b", "TARGET_c", "fold"]
    assert list(pd.read_csv(out / "SECOND" / "patient-preds.csv").columns)[3:5] == ["SECOND_x", "SECOND_y"]
    res = _cli("train", "--clini", clini, "--slides-table", slides, "--features", feats, "--target", "SECOND",
               "--out", out / "final", "--steps", "2", "--val-every", "2", "--min-steps", "0", "--model", "mean")
    assert res.exit_code == 0, res.output
    assert load_model(out / "final" / "SECOND" / "model.ckpt").meta.model == "mean"


def _bad(tmp_path: Path, clini: Path, slides: Path, feats: Path, *extra: object) -> str:
    out = tmp_path / "bad-out"
    res = _cli("crossval", "--clini", clini, "--slides-table", slides, "--features", feats, "--out", out, *extra)
    assert res.exit_code == 2
    assert not out.exists()  # nothing half-written
    return res.output.strip().splitlines()[-1]


def test_cli_bad_inputs(tmp_path: Path) -> None:
    clini, slides, feats, _ = make_feature_cohort(tmp_path, n_patients=6, n_tiles=5, dim=8)
    assert _bad(tmp_path, clini, slides, feats, "--target", "isMSIH") == (
        "Error: target column 'isMSIH' not in clini.csv (columns: PATIENT, TARGET); check the spelling or set the "
        "column name option")
    assert _bad(tmp_path, clini, slides, feats, "--target", "TARGET", "--folds", "8") == (
        "Error: crossval with 8 folds needs at least 8 patients; target 'TARGET' has 6 usable patients; "
        "use --folds 6 or fewer")
    assert _bad(tmp_path, clini, slides, feats, "--target", "TARGET", "--folds", "4") == (
        "Error: class 'neg' of target 'TARGET' has 3 patients, fewer than the 4 folds; use --folds 3 or fewer")
    assert _bad(tmp_path, clini, slides, feats, "--target", "TARGET", "--categories", "pos", "--categories", "other") == (
        "Error: target 'TARGET' has a single class after dropping unusable rows: 'pos' (3 patients); "
        "a classifier needs at least two classes")
    assert _bad(tmp_path, clini, slides, feats, "--target", "TARGET", "--model", "clam") == (
        "Error: '--model' must be one of attention, mean, tile-vote, transformer (got 'clam')")
    ct = pd.read_csv(clini)
    pd.concat([ct, ct.iloc[[0]].assign(TARGET="pos")]).to_csv(clini, index=False)
    assert _bad(tmp_path, clini, slides, feats, "--target", "TARGET") == (
        "Error: patient 'PAT-00-0000' has conflicting values for 'TARGET' in clini.csv: 'neg', 'pos' "
        "(1 patient affected); fix or remove the duplicate rows")
    ct.to_csv(clini, index=False)
    _, _, other, _ = make_feature_cohort(tmp_path / "b", n_patients=6, n_tiles=5, dim=8, encoder="uni")
    (feats / "PAT-00-0003-S0.h5").write_bytes((other / "PAT-00-0003-S0.h5").read_bytes())
    assert _bad(tmp_path, clini, slides, feats, "--target", "TARGET") == (
        f"Error: feature files of two encoders in one cohort: 'fake-encoder' ({feats / 'PAT-00-0000-S0.h5'}) and "
        f"'uni' ({feats / 'PAT-00-0003-S0.h5'}); re-extract all slides with one encoder and tile size")


def test_single_training_patient_per_class(tmp_path: Path) -> None:
    clini, slides, feats, _ = make_feature_cohort(tmp_path, n_patients=3, n_tiles=5, dim=8)
    cohort = build_cohort(feats, slides, clini, target="TARGET")
    with pytest.raises(CohortError) as e:
        fit(cohort, TrainSettings(**FAST), tmp_path / "m.ckpt")
    assert str(e.value) == "class 'pos' of target 'TARGET' has 1 patient; at least 2 are needed for the inner validation split"
    assert list(tmp_path.glob("*.ckpt*")) == []


@pytest.mark.parametrize("name", list_mil())
def test_real_feature_bags_smoke(data_dir: Path, tmp_path: Path, name: str) -> None:
    """The two real STAMP-layout bags (one without coords) go through the loaders, a training step and inference."""
    import lightning as L

    from slidepredict.training.data import bag_loader
    from slidepredict.training.fitting import quiet_lightning
    from slidepredict.training.module import LitMIL

    pd.DataFrame({"PATIENT": ["P1", "P2"], "FILENAME": ["TCGA-3X-AAVA-01Z-00-DX1.svs", "TCGA-AD-6964-01Z-00-DX1.svs"]}).to_csv(tmp_path / "s.csv", index=False)
    pd.DataFrame({"PATIENT": ["P1", "P2"], "MSI": ["MSS", "MSIH"]}).to_csv(tmp_path / "c.csv", index=False)
    cohort = build_cohort(data_dir / "features", tmp_path / "s.csv", tmp_path / "c.csv", target="MSI")
    assert cohort.class_counts() == {"MSIH": 1, "MSS": 1} and cohort.spec.dim == 512
    lit = LitMIL(name, 512, 2, class_weights=[1.0, 1.0], lr=1e-3)
    with quiet_lightning():
        trainer = L.Trainer(fast_dev_run=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                            accelerator="cpu")
        trainer.fit(lit, bag_loader(cohort, train=True, bag_size=64, batch_size=2), bag_loader(cohort, train=False))
    assert np.isfinite(trainer.callback_metrics["train_loss"].item())
    for patient in cohort.patients:
        bag, coords = cohort.load_bag(patient)
        out = lit.head.eval()(torch.from_numpy(bag)[None], None if coords is None else torch.from_numpy(coords)[None],
                              torch.ones(1, len(bag), dtype=torch.bool))
        assert torch.isfinite(out.logits).all() and torch.allclose(out.attention.sum(), torch.tensor(1.0))
