"""The mean-pool reference fitted on the head's folds: same patients, training folds only, printed beside the head."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from typer.testing import CliRunner

from fakecohort import make_feature_cohort
from slidepredict.cli import app
from slidepredict.cohort import build_cohort
from slidepredict.training import TrainSettings, crossval
from slidepredict.training.baseline import baseline_crossval, pooled_features

FAST = dict(steps=6, val_every=3, min_steps=0, patience=2, lr=2e-3, batch_size=4, bag_size=16)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    clini, slides, feats, _ = make_feature_cohort(tmp_path_factory.mktemp("base"), n_patients=16, n_tiles=12, dim=8)
    return build_cohort(feats, slides, clini, target="TARGET"), (clini, slides, feats)


def test_baseline_sits_beside_the_folds_and_sees_only_training_patients(cohort, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    c, _ = cohort
    out = tmp_path / "cv"
    preds = crossval(c, out, TrainSettings(**FAST), folds=2, baseline="mean-pool")
    ref = pd.read_csv(out / "baseline-mean-pool" / "patient-preds.csv")
    assert sorted(ref.PATIENT) == sorted(preds.PATIENT)
    assert dict(zip(ref.PATIENT, ref.fold)) == dict(zip(preds.PATIENT, preds.fold))
    assert set(ref.model) == {"mean-pool + logistic regression"}
    # refit by hand on each fold's training patients: the same probabilities, so no test patient took part
    splits = json.loads((out / "splits.json").read_text())["splits"]
    x, index = pooled_features(c), {p: i for i, p in enumerate(c.patients)}
    for k, split in enumerate(splits):
        tr, te = [index[p] for p in split["train"]], [index[p] for p in split["test"]]
        lr = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(x[tr], c.labels[tr])
        got = ref.set_index("PATIENT").loc[split["test"], "TARGET_pos"].to_numpy()
        assert np.allclose(got, lr.predict_proba(x[te])[:, 1])


def test_max_pool_takes_the_highest_tile(cohort) -> None:  # type: ignore[no-untyped-def]
    c, _ = cohort
    first = c.patients[0]
    assert np.allclose(pooled_features(c, "max-pool")[0], c.load_bag(first)[0].max(0))
    assert np.allclose(pooled_features(c, "mean-pool")[0], c.load_bag(first)[0].astype(np.float32).mean(0), atol=1e-6)


def test_baseline_needs_labels(cohort) -> None:  # type: ignore[no-untyped-def]
    c, _ = cohort
    from dataclasses import replace

    with pytest.raises(ValueError, match="a baseline needs a labelled cohort"):
        baseline_crossval(replace(c, labels=None), [{"train": c.patients[:8], "test": c.patients[8:]}])


@pytest.mark.parametrize(("flag", "written"), [([], True), (["--baseline", "none"], False)])
def test_cli_prints_the_baseline_next_to_the_head(cohort, tmp_path: Path, flag: list[str], written: bool) -> None:  # type: ignore[no-untyped-def]
    _, (clini, slides, feats) = cohort
    out = tmp_path / "cv"
    args = ["crossval", "--features", feats, "--clini", clini, "--slides-table", slides, "--out", out, "-t", "TARGET",
            "--folds", "2", "--steps", "6", "--val-every", "3", "--min-steps", "0", "--bag-size", "16", *flag]
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    assert ("mean-pool + logistic regression, same folds: AUROC" in res.output) == written
    assert (out / "TARGET" / "baseline-mean-pool" / "patient-preds.csv").is_file() == written
