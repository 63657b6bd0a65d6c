"""Fine-tuning an encoder's last blocks on cells: what it trains, what it records, and that held-out stays held out.

A tiny timm ResNet (timm's ``test_resnet``, 32 px input) registered here stands in for the real
encoders, starting from a seeded random init (no weights can be downloaded in tests); the loading,
saving and training code is the one real encoders go through.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from slidepredict.cli import app
from slidepredict.demo.cells import CellImageSpec, make_cell_images
from slidepredict.features import list_encoders, register_encoder
from slidepredict.features._registry import EncoderConfig

TINY = "test-tiny-resnet"


@pytest.fixture(scope="module", autouse=True)
def tiny_encoder() -> Iterator[None]:
    """Registered for this module only: other tests see the built-in encoders alone."""
    from slidepredict.features._registry import _ENCODERS

    register_encoder(TINY)(lambda: EncoderConfig(name=TINY, dim=96, arch="test_resnet", hf_hub_id="test/tiny-resnet",
                                                 input_px=32, description="timm's test_resnet, for tests"))
    yield
    dict.pop(_ENCODERS, TINY)
    assert TINY not in list_encoders()

WELLS = tuple(f"{r}{c:02d}" for r in "AB" for c in range(1, 7))
QUICK_MIL = ["--steps", "30", "--min-steps", "0", "--val-every", "10", "--restarts", "1"]


def _run(*args: object, ok: bool = True) -> str:
    res = CliRunner().invoke(app, [str(a) for a in args])
    if ok:
        assert res.exit_code == 0, res.output
    else:
        assert res.exit_code != 0, res.output
    said = [ln for ln in res.output.splitlines() if ln.strip() and not ln.startswith((" ", "INFO", "WARNING"))]
    return " ".join(" ".join(said).split())  # what the command printed, without the log lines


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("finetune")
    made = make_cell_images(root / "data", CellImageSpec(wells=WELLS, images_per_well=2, classes=("round", "elongated"),
                                                         cells=(8, 12), seed=1))
    args = ["--images", made.root / "images", "--image-table", made.table, "--encoder", TINY, "--weights", "random",
            "--unit", "nuclei", "--unit-size", "32", "--bag", "well", "-t", "LABEL", "--tune-epochs", "4",
            "--tune-lr", "1e-4", "--augment", "flips", "--augment", "rot90"]
    line = _run("finetune", *args, "--out", root / "tuned")
    return SimpleNamespace(root=root, made=made, args=args, line=line, weights=root / "tuned" / "LABEL" / "encoder.safetensors")


def test_only_the_last_block_is_trained_and_the_file_loads_as_encoder_weights(cohort: SimpleNamespace) -> None:
    from safetensors.torch import load_file

    from slidepredict.features import get_encoder, load_encoder
    from slidepredict.features._builder import build_backbone

    assert re.fullmatch(
        rf"LABEL: {TINY} fine-tuned \(layer4\.0\) on \d+ units of \d+ images, epoch [1-4] of 4 kept, validation "
        rf"accuracy \d\.\d\d on \d+ units -> {re.escape(str(cohort.weights))}; embed with `slidepredict cells "
        rf"--encoder {TINY} --weights {re.escape(str(cohort.weights))}` \(its features are not for cross-validation: "
        r"use --crossval\)", cohort.line), cohort.line
    start = build_backbone(get_encoder(TINY), seed=0).state_dict()  # what `--weights random` started from
    tuned = load_file(str(cohort.weights))
    assert set(tuned) == set(start)
    changed = {k for k in start if not torch.equal(start[k], tuned[k])}
    assert changed and all(k.startswith("layer4.") for k in changed)  # frozen: stem, layer1-3, every BN statistic
    assert not any("running" in k for k in changed)
    enc = load_encoder(TINY, cohort.weights)
    record = json.loads((cohort.weights.parent / "finetune.json").read_text())
    assert enc.tuning is not None and enc.tuning["target"] == "LABEL" and enc.tuning["blocks"] == ["layer4.0"]
    assert len(enc.tuned_on) == record["n_train_images"] + record["n_val_images"] == 24
    assert [r["epoch"] for r in record["history"]] == [0, 1, 2, 3, 4] and record["categories"] == ["elongated", "round"]
    # epoch 0 is the untuned encoder under a linear head fitted on its embeddings (val accuracy 1.00 on round
    # vs elongated); the kept epoch beats it on validation (measured: epoch 3, val loss 0.042 vs 0.043) and
    # the tuning lowers its training loss (measured 0.14 -> 0.08)
    kept = record["history"][record["best_epoch"]]
    assert kept["val_loss"] == min(r["val_loss"] for r in record["history"]) and kept["val_accuracy"] >= 0.9
    assert record["history"][-1]["train_loss"] < record["history"][1]["train_loss"]
    with pytest.raises(Exception, match=re.escape(f"was fine-tuned from encoder '{TINY}'; use --encoder {TINY}")):
        load_encoder("resnet50-trunc", cohort.weights)


def test_a_tuning_that_only_hurts_on_validation_keeps_the_untuned_weights(cohort: SimpleNamespace) -> None:
    """At lr 1e-2 every epoch is worse than the untuned encoder with a fitted head: those weights are kept,
    and the record and the printed line say so (before, the best of the tuned epochs was kept whatever it was)."""
    from safetensors.torch import load_file

    from slidepredict.features import get_encoder
    from slidepredict.features._builder import build_backbone

    out = cohort.root / "too-fast"
    line = _run("finetune", *cohort.args, "--tune-lr", "1e-2", "--tune-epochs", "2", "--out", out)
    record = json.loads((out / "LABEL" / "finetune.json").read_text())
    assert record["best_epoch"] == 0 and all(r["val_loss"] > record["history"][0]["val_loss"] for r in record["history"][1:])
    assert "no epoch of 2 beat the untuned encoder with a fitted head on validation: untuned weights kept" in line, line
    start = build_backbone(get_encoder(TINY), seed=0).state_dict()
    tuned = load_file(str(out / "LABEL" / "encoder.safetensors"))
    assert all(torch.equal(start[k], tuned[k]) for k in start)


def test_a_rerun_reuses_the_tuned_encoder_and_other_settings_are_refused(cohort: SimpleNamespace) -> None:
    before = cohort.weights.stat().st_mtime_ns
    assert _run("finetune", *cohort.args, "--out", cohort.root / "tuned") == cohort.line
    assert cohort.weights.stat().st_mtime_ns == before
    out = _run("finetune", *cohort.args, "--tune-epochs", "3", "--out", cohort.root / "tuned", ok=False)
    assert out == (f"Error: {cohort.weights} was fine-tuned with epochs=4, this run asks for 3; use a new --out "
                   "folder or delete it")
    assert cohort.weights.stat().st_mtime_ns == before


def test_crossval_refuses_features_of_an_encoder_tuned_on_the_test_images(cohort: SimpleNamespace) -> None:
    from slidepredict.featurefile import read_attrs

    cells = cohort.root / "tuned-cells"
    _run("cells", "--images", cohort.made.root / "images", "--image-table", cohort.made.table, "--encoder", TINY,
         "--weights", cohort.weights, "--unit", "nuclei", "--unit-size", "32", "--bag", "well", "--out", cells)
    attrs = read_attrs(cells / "features" / "A01_s1.h5")
    assert attrs["encoder_tuned_on_image"] and attrs["encoder_tuning"].startswith("fine-tuned for LABEL on 24 images")
    bags = cells / "bags.csv"
    out = _run("crossval", "--features", cells / "features", "--clini", bags, "--slides-table", bags, "--patient-col",
               "BAG", "-t", "LABEL", "--folds", "2", *QUICK_MIL, "--out", cohort.root / "leaky", ok=False)
    assert re.fullmatch(
        r"Error: fold 0: \d+ held-out feature files \(e\.g\. \S+\.h5\) come from an encoder fine-tuned on those very "
        r"images, so their predictions would not be held out; cross-validate with `slidepredict finetune --crossval` "
        r"\(one encoder tuned per fold\), or embed with the untuned encoder", out), out
    assert not list((cohort.root / "leaky").rglob("*.*"))  # refused before splits or settings were written


def test_crossval_tunes_one_encoder_per_fold_on_its_training_images_only(cohort: SimpleNamespace) -> None:
    from slidepredict.featurefile import read_attrs
    from slidepredict.features._builder import read_tuning
    from slidepredict.features._weights import ResolvedWeights

    cv = cohort.root / "cv"
    line = _run("finetune", *cohort.args, "--crossval", "--folds", "2", "--group", "WELL", *QUICK_MIL, "--out", cv)
    assert re.fullmatch(
        r"LABEL: 2-fold cross-validation of 12 bags, encoder fine-tuned in each fold on its training images \(tuned "
        r"weights kept in [012] of 2 folds, the untuned ones where no epoch beat them\): pooled "
        r"AUROC \d\.\d{3}; frozen encoder, same folds: \d\.\d{3}; mean-pool \+ logistic regression, frozen features, "
        rf"same folds: AUROC \d\.\d\d -> {re.escape(str(cv / 'LABEL' / 'patient-preds.csv'))}", line), line
    table = pd.read_csv(cv / "frozen-cells" / "bags.csv")
    splits = json.loads((cv / "LABEL" / "splits.json").read_text())["splits"]
    assert splits == json.loads((cv / "LABEL" / "frozen" / "splits.json").read_text())["splits"]
    for k, split in enumerate(splits):
        seen = read_tuning(ResolvedWeights("file", path=cv / "LABEL" / f"fold-{k}" / "encoder" / "encoder.safetensors"))
        assert seen is not None
        test_images = set(table.loc[table.BAG.isin(split["test"]), "IMAGE"])
        assert seen["images"] and not set(seen["images"]) & test_images
        assert set(seen["images"]) <= set(table.loc[table.BAG.isin(split["train"]), "IMAGE"])
        for image in table.IMAGE:  # each fold's features say which images its encoder saw
            attrs = read_attrs(cv / "LABEL" / f"fold-{k}" / "cells" / "features" / f"{Path(image).stem}.h5")
            assert bool(attrs["encoder_tuned_on_image"]) == (image in seen["images"])
    pooled = pd.read_csv(cv / "LABEL" / "patient-preds.csv")
    frozen = pd.read_csv(cv / "LABEL" / "frozen" / "patient-preds.csv")
    assert sorted(pooled.PATIENT) == sorted(frozen.PATIENT) and len(pooled) == 12
    assert dict(zip(pooled.PATIENT, pooled.fold)) == dict(zip(frozen.PATIENT, frozen.fold))
    assert _run("finetune", *cohort.args, "--crossval", "--folds", "2", "--group", "WELL", *QUICK_MIL, "--out", cv) == line


def test_every_augmentation_keeps_units_valid_and_does_what_it_says() -> None:
    from slidepredict.cells.augment import AUGMENTS, augment, list_augmentations
    from slidepredict.cells.settings import FinetuneSettings

    s = FinetuneSettings()
    x = torch.rand((64, 3, 12, 12), generator=torch.Generator().manual_seed(0)) * 155 + 50
    for name in list_augmentations():
        y = AUGMENTS[name](x, s, torch.Generator().manual_seed(1))
        assert y.shape == x.shape and y.dtype == x.dtype and y.min() >= 0 and y.max() <= 255, name
        assert torch.equal(y, AUGMENTS[name](x, s, torch.Generator().manual_seed(1))), name  # seeded
        assert not torch.equal(y, x), name
    for name in ("flips", "rot90"):  # the same pixels, moved
        y = AUGMENTS[name](x, s, torch.Generator().manual_seed(1))
        assert torch.equal(y.flatten(1).sort(1).values, x.flatten(1).sort(1).values)
    ratio = AUGMENTS["brightness"](x, s, torch.Generator().manual_seed(1)).mean((1, 2, 3)) / x.mean((1, 2, 3))
    assert ratio.min() >= 0.8 - 1e-6 and ratio.max() <= 1.2 + 1e-6 and ratio.std() > 0.05
    y = AUGMENTS["contrast"](x, s, torch.Generator().manual_seed(1))
    assert torch.allclose(y.mean((1, 2, 3)), x.mean((1, 2, 3)), atol=1e-3)  # contrast keeps each unit's mean
    still = FinetuneSettings(brightness=0.0, contrast=0.0)
    assert torch.allclose(augment(x, ["brightness", "contrast"], still, torch.Generator().manual_seed(1)), x, atol=1e-4)


def test_bad_fine_tuning_requests_are_refused_in_one_line(cohort: SimpleNamespace, tmp_path: Path) -> None:
    from slidepredict.config import RunConfig
    from slidepredict.core.errors import SlidePredictError
    from slidepredict.pipeline.run import run_workflow

    args = [a if a != TINY else "stain-texture" for a in cohort.args]
    args = [a for a in args if a not in ("--weights", "random")]
    assert _run("finetune", *args, "--out", tmp_path / "a", ok=False) == (
        "Error: encoder 'stain-texture' has no trainable backbone; fine-tune a timm encoder such as resnet50-trunc "
        "(--encoder)")
    assert _run("finetune", *cohort.args, "--blocks", "9", "--out", tmp_path / "b", ok=False) == (
        f"Error: --blocks 9: encoder '{TINY}' uses 5 blocks (conv1 + bn1, layer1.0, layer2.0, layer3.0, layer4.0); "
        "use --blocks 5 or fewer")
    assert _run("finetune", *cohort.args, "--target-type", "continuous", "--out", tmp_path / "c", ok=False) == (
        "Error: fine-tuning learns classes; target 'LABEL' is continuous")
    out = _run("finetune", *cohort.args, "--augment", "blur", "--out", tmp_path / "d", ok=False)
    assert "--augment" in out and "must be one of brightness, contrast, flips, rot90" in out
    table = pd.read_csv(cohort.made.table)
    table.loc[table.IMAGE == "A01_s2.tif", "LABEL"] = "elongated"  # a well whose two images disagree
    table.to_csv(tmp_path / "mixed.csv", index=False)
    mixed = [a if a != cohort.made.table else tmp_path / "mixed.csv" for a in cohort.args]
    assert _run("finetune", *mixed, "--out", tmp_path / "e", ok=False) == (
        "Error: bag 'P1:A01' holds images labelled elongated, round for 'LABEL'; every image of a well needs one "
        "label (or use --bag image)")
    import tifffile  # a segmentation that found no cell in any 'elongated' image

    table = pd.read_csv(cohort.made.table)
    (tmp_path / "masks").mkdir()
    for image, label in zip(table.IMAGE, table.LABEL):
        mask = np.zeros((256, 256), np.uint16)
        mask[100:130, 100:130] = label == "round"
        tifffile.imwrite(tmp_path / "masks" / image, mask)
    empty = [a for a in cohort.args if a not in ("nuclei", "--unit")] + ["--unit", "mask", "--masks", tmp_path / "masks"]
    assert _run("finetune", *empty, "--out", tmp_path / "f", ok=False) == (
        "Error: no mask units were found in the training images of class 'elongated' of 'LABEL'; check --unit and "
        "--unit-size on those images")
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix in (".safetensors", ".json", ".h5")]
    cfg = RunConfig.model_validate({"output_dir": str(tmp_path / "run"), "cells": {"images": str(cohort.made.root),
                                    "table": str(cohort.made.table)}, "training": {"targets": ["LABEL", "WELL"]},
                                    "finetune": {"blocks": 1}})
    with pytest.raises(SlidePredictError) as err:
        run_workflow(cfg)
    assert str(err.value) == ("finetune: in `slidepredict run` tunes one encoder for one target; training.targets has 2 "
                              "(LABEL, WELL): run one config per target")
    assert not (tmp_path / "run").exists()


def test_run_cross_validates_tuned_per_fold_and_deploys_with_the_encoder_tuned_on_every_image(
        cohort: SimpleNamespace, tmp_path: Path) -> None:
    from slidepredict.config import RunConfig
    from slidepredict.featurefile import read_attrs
    from slidepredict.pipeline.run import run_workflow

    plate = make_cell_images(tmp_path / "plate", CellImageSpec(wells=WELLS[:6], images_per_well=1,
                                                               classes=("round", "elongated"), cells=(8, 12), seed=7))
    pd.read_csv(plate.table).assign(PLATE="P2").to_csv(plate.table, index=False)  # another plate, new wells
    cfg = RunConfig.model_validate({
        "output_dir": str(tmp_path / "run"),
        "extract": {"encoder": TINY, "weights": "random"},
        "cells": {"images": str(cohort.made.root / "images"), "table": str(cohort.made.table), "unit": "nuclei",
                  "unit_size": 32, "bag": "well"},
        "training": {"targets": ["LABEL"], "folds": 2, "group": "WELL", "steps": 30, "min_steps": 0, "val_every": 10,
                     "restarts": 1},
        "finetune": {"epochs": 2, "lr": 1e-3},
        "deploy": {"slides_dir": str(plate.root / "images"), "slide_table": str(plate.table)},
    })
    ctx = run_workflow(cfg)
    run = tmp_path / "run"
    assert any(re.search(r"encoder fine-tuned per fold \(tuned weights kept in [012] of 2 folds, the untuned ones where "
                         r"no epoch beat them\), the frozen encoder on the same folds: AUROC", h) for h in ctx.headlines)
    for k in (0, 1):
        assert (run / "crossval" / "LABEL" / f"fold-{k}" / "encoder" / "encoder.safetensors").is_file()
    assert (run / "crossval" / "LABEL" / "frozen" / "patient-preds.csv").is_file()
    assert not (run / "crossval" / "frozen-cells").exists()  # the extract stage's embedding is the frozen one
    tuned_file = read_attrs(run / "finetune" / "LABEL" / "cells" / "features" / "A01_s1.h5")
    model = torch.load(run / "train" / "LABEL" / "model.ckpt", map_location="cpu", weights_only=True)
    assert model["slidepredict"]["features"]["encoder_hash"] == tuned_file["encoder_hash"]  # the final model learned tuned features
    plate_file = read_attrs(run / "external" / "cells" / "features" / "A01_s1.h5")
    assert plate_file["encoder_hash"] == tuned_file["encoder_hash"]  # and the plate was embedded by the same encoder
    assert not plate_file["encoder_tuned_on_image"]  # same name as a training image, other content
    preds = pd.read_csv(run / "deploy" / "LABEL" / "patient-preds.csv")
    assert sorted(preds.PATIENT) == [f"P2:{w}" for w in WELLS[:6]]
    assert any(h.startswith("LABEL external validation: AUROC") for h in ctx.headlines), ctx.headlines
    cuts = json.loads((run / "train" / "LABEL" / "operating-point.json").read_text())["thresholds"]
    assert cuts["round"] + cuts["elongated"] == pytest.approx(1.0)  # mid-gap cuts of one binary target agree
    metrics = pd.read_csv(run / "deploy" / "LABEL" / "stats" / "metrics.csv")
    at_cut = metrics[(metrics.threshold == "carried") & (metrics.metric == "sensitivity")]
    assert len(at_cut) == 2 and (at_cut.value >= 2 / 3).all()  # was 0.00 with the cut on the gap's edge
