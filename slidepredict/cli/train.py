"""`slidepredict crossval` and `slidepredict train`: patient-level models, one per target."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from slidepredict.cli._app import app, config_option, fail

Clini = Annotated[Path, typer.Option("--clini", help="Clinical table (CSV/XLSX): PATIENT plus one column per target.")]
Slides = Annotated[Path, typer.Option("--slides-table", help="Slide table (CSV/XLSX): PATIENT, FILENAME (with or without extension).")]
Features = Annotated[Path, typer.Option("--features", "-f", help="Folder of <slide>.h5 feature files (searched recursively).")]
Targets = Annotated[list[str], typer.Option("--target", "-t", help="Target column; repeat for several targets (one model each).")]
Out = Annotated[Path, typer.Option("--out", "-o", help="Output folder; each target gets <out>/<target>/.")]
Model = Annotated[str, typer.Option("--model", "-m", help="MIL head: attention, transformer, mean or tile-vote.")]
Categories = Annotated[Optional[list[str]], typer.Option(
    "--categories", help="Classes to keep, in this order (repeat); default: all values, sorted. Needs a single --target.")]
BagSize = Annotated[int, typer.Option("--bag-size", help="Tiles sampled per patient in each training step.")]
BatchSize = Annotated[int, typer.Option("--batch-size", help="Patients per training step.")]
Epochs = Annotated[int, typer.Option("--epochs", help="Maximum epochs (early stopping on the inner validation split).")]
Patience = Annotated[int, typer.Option("--patience", help="Epochs without validation improvement before stopping.")]
LR = Annotated[float, typer.Option("--lr", help="Peak learning rate of the one-cycle schedule (AdamW).")]
Seed = Annotated[int, typer.Option("--seed", help="Seed for splits, sampling and initialisation.")]
Workers = Annotated[int, typer.Option("--workers", help="DataLoader worker processes reading h5 files.")]
Device = Annotated[str, typer.Option("--device", help="cpu, gpu or auto (Lightning accelerator).")]
PatientCol = Annotated[str, typer.Option("--patient-col", help="Patient column of both tables.")]
FilenameCol = Annotated[str, typer.Option("--filename-col", help="Slide file column of the slide table.")]


def _run(mode: str, clini: Path, slides_table: Path, features: Path, targets: list[str], out: Path,
         folds: int, categories: list[str] | None, patient_col: str, filename_col: str, fold: int | None = None,
         **train: object) -> None:
    from slidepredict.errors import SlidePredictError
    from slidepredict.training import TrainConfig
    from slidepredict.training.targets import run_targets

    try:
        lines = run_targets(mode, features, slides_table, clini, targets, out, TrainConfig(**train),  # type: ignore[arg-type]
                            folds=folds, fold=fold, categories=categories, patient_col=patient_col,
                            filename_col=filename_col)
        for line in lines:
            typer.echo(line)
    except SlidePredictError as exc:
        fail(str(exc))


@app.command("crossval")
def crossval_cmd(
    clini: Clini, slides_table: Slides, features: Features, target: Targets, out: Out,
    folds: Annotated[int, typer.Option("--folds", help="Number of patient-level stratified folds.")] = 5,
    fold: Annotated[Optional[int], typer.Option("--fold", help="Run only this fold (0-based), e.g. one cluster job per fold.")] = None,
    model: Model = "attention", categories: Categories = None, bag_size: BagSize = 512, batch_size: BatchSize = 16,
    epochs: Epochs = 32, patience: Patience = 8, lr: LR = 1e-4, seed: Seed = 0, workers: Workers = 0,
    device: Device = "cpu", patient_col: PatientCol = "PATIENT", filename_col: FilenameCol = "FILENAME",
    config: Path = config_option(),
) -> None:
    """Patient-level k-fold cross-validation: a model per fold, test predictions pooled in patient-preds.csv."""
    _run("crossval", clini, slides_table, features, target, out, folds, categories, patient_col, filename_col, fold,
         model=model, bag_size=bag_size, batch_size=batch_size, epochs=epochs, patience=patience, lr=lr,
         seed=seed, num_workers=workers, accelerator=device)


@app.command("train")
def train_cmd(
    clini: Clini, slides_table: Slides, features: Features, target: Targets, out: Out,
    model: Model = "attention", categories: Categories = None, bag_size: BagSize = 512, batch_size: BatchSize = 16,
    epochs: Epochs = 32, patience: Patience = 8, lr: LR = 1e-4, seed: Seed = 0, workers: Workers = 0,
    device: Device = "cpu", patient_col: PatientCol = "PATIENT", filename_col: FilenameCol = "FILENAME",
    config: Path = config_option(),
) -> None:
    """One model on all patients (with an inner validation split) for deployment: <out>/<target>/model.ckpt."""
    _run("train", clini, slides_table, features, target, out, 0, categories, patient_col, filename_col,
         model=model, bag_size=bag_size, batch_size=batch_size, epochs=epochs, patience=patience, lr=lr,
         seed=seed, num_workers=workers, accelerator=device)
