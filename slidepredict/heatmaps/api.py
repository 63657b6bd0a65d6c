"""Heatmaps for a folder of slides: per-slide output folders that appear complete or not at all.

Each slide is drawn into a hidden ``.<slide>.partial-<pid>`` folder that is renamed to
``<out>/<slide>/`` only when every file is written, so a crash or a bad slide never leaves half
a result; ``heatmaps.json`` records the settings and inputs, so reruns skip finished slides.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from slidepredict.core import jsonio
from slidepredict.core import batch
from slidepredict.core.errors import SlidePredictError
from slidepredict.featurefile import read_features, slide_h5_path
from slidepredict.heatmaps.models import Drawer, HeatmapModels, load_heatmap_models
from slidepredict.heatmaps.overlay import map_scale, write_overlays
from slidepredict.heatmaps.patients import PatientPrediction, patient_predictions
from slidepredict.heatmaps.qupath import channel_colours, score_stack, write_geojson, write_ome_tiff
from slidepredict.heatmaps.scores import check_same_slide, score_slide
from slidepredict.heatmaps.settings import HeatmapSettings
from slidepredict.heatmaps.tiles import contact_sheet, extract_tiles
from slidepredict.slide import MPPChoice, Slide, find_slides, open_slide, slide_stem
from slidepredict.training.predict import LoadedModel

log = logging.getLogger(__name__)

SCORES_FILE = "tile-scores.csv"
DRAWING = ("topk", "thumb_px", "map_px", "tile_px")  # the settings that change what is drawn for a slide
DONE_FILE = "heatmaps.json"  # written last: its presence and content mark a finished slide


@dataclass
class HeatmapRun:
    """Per-slide output folders (finished or already complete) and the batch outcome."""

    folders: list[Path] = field(default_factory=list)
    result: batch.BatchResult = field(default_factory=batch.BatchResult)


def select_slides(slides_dir: Path, features_dir: Path, names: Sequence[str] | None) -> list[tuple[Path, Path]]:
    """(slide, feature file) pairs; named slides must exist and have features, others without are reported."""
    if not Path(features_dir).is_dir():
        raise SlidePredictError(f"features folder not found: {features_dir}; run `slidepredict extract` first")
    slides = find_slides([slides_dir], required=True)
    by_stem = {slide_stem(p): p for p in slides}
    pairs = {stem: (p, slide_h5_path(features_dir, p)) for stem, p in by_stem.items()}
    if names:
        wanted = list(dict.fromkeys(slide_stem(n) for n in names))
        unknown = [n for n in wanted if n not in pairs]
        if unknown:
            raise SlidePredictError(
                f"--slide {unknown[0]}: no such slide in {slides_dir} ({len(pairs)} slides there, e.g. "
                f"{', '.join(sorted(pairs)[:3])})"
            )
        missing = [n for n in wanted if not pairs[n][1].is_file()]
        if missing:
            raise SlidePredictError(
                f"--slide {missing[0]}: no feature file {pairs[missing[0]][1]}; run `slidepredict extract` on it first"
            )
        return [pairs[n] for n in wanted]
    have = [pairs[s] for s in sorted(pairs) if pairs[s][1].is_file()]
    lacking = sorted(s for s in pairs if not pairs[s][1].is_file())
    if lacking:
        log.warning("%d slides have no feature file in %s and are left out (%s%s)", len(lacking), features_dir,
                    ", ".join(lacking[:5]), ", ..." if len(lacking) > 5 else "")
    if not have:
        raise SlidePredictError(
            f"none of the {len(pairs)} slides in {slides_dir} has a feature file in {features_dir} "
            "(expected <slide>.h5); run `slidepredict extract` first"
        )
    return have


def _open(slide_path: Path, mpp: MPPChoice, attrs: dict[str, Any]) -> Slide:
    """The slide with its own MPP, else --mpp, else the MPP the features were extracted at (--mpp-override wins)."""
    if mpp is None and attrs.get("mpp") not in (None, "none"):
        mpp = float(attrs["mpp"])
    return open_slide(slide_path, mpp=mpp)


def _fingerprint(drawer: Drawer, features: Path, params: HeatmapSettings, patient: PatientPrediction | None) -> dict[str, Any]:
    st = features.stat()
    return {"model_sha256": list(drawer.shas), "features": str(features.resolve()), "features_size": st.st_size,
            "features_mtime_ns": st.st_mtime_ns, "params": params.model_dump(include=set(DRAWING)),
            "patient": None if patient is None else [patient.patient, [round(float(p), 6) for p in patient.probs]]}


def _is_done(folder: Path, fingerprint: dict[str, Any]) -> bool:
    try:
        return json.loads((folder / DONE_FILE).read_text()).get("inputs") == fingerprint
    except (OSError, ValueError):
        return False


def _publish(tmp: Path, final: Path) -> None:
    """Swap the finished folder in; an older result is removed only once the new one is in place."""
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def draw_slide(drawer: Drawer, slide_path: Path, features_path: Path, folder: Path, stem: str,
               params: HeatmapSettings, patient: PatientPrediction | None = None, mpp: MPPChoice = None,
               ) -> dict[str, Any]:
    """Every output file of one slide into ``folder``; returns the summary stored in ``heatmaps.json``."""
    bag = read_features(features_path)
    with _open(slide_path, mpp, bag.attrs) as slide:
        check_same_slide(bag.attrs, slide.dimensions, str(features_path), slide_path.name)
        scores = score_slide(drawer, bag, float(slide.mpp))
        if patient is not None:
            scores = replace(scores, probs=patient.probs, patient=patient.patient)
        bag = None  # type: ignore[assignment]  # features are no longer needed; free them before drawing
        scores.frame().to_csv(folder / SCORES_FILE, index=False, float_format="%.6g")
        frame = slide.qupath_frame  # QuPath crops slides with bounds: its exports subtract the offset
        write_geojson(scores, folder / f"{stem}.geojson", stem, frame[0])
        thumb, thumb_scale = slide.thumbnail(params.thumb_px)
        write_overlays(thumb, thumb_scale, scores, folder, stem)
        del thumb
        if params.topk > 0:
            tile_px = params.tile_px or int(drawer.models[0].meta.spec.tile_size_px or 224)
            picked = extract_tiles(slide, scores, folder, params.topk, tile_px)
            title = f"{stem}: top and bottom {params.topk} tiles per class (tile score)"
            contact_sheet(picked, folder / f"{stem}_tiles.png", title)
        scale = map_scale(frame[1], scores.size0, params.map_px)
        stack, names = score_stack(scores, frame, scale)
        write_ome_tiff(stack, names, folder / f"{stem}_probability.ome.tif", float(slide.mpp) * scale,
                       channel_colours(names, scores.categories))
        return {"slide": str(slide_path), "patient": scores.patient, "mpp": float(slide.mpp), "n_tiles": int(len(scores.coords)),
                "target": scores.target, "prediction": scores.prediction,
                **({"value": float(scores.probs[0])} if scores.value_range else
                   {"probabilities": dict(zip(scores.categories, map(float, scores.probs)))}),
                "map_downsample": scale, "qupath_origin_level0": list(frame[0]), "drawn_by": drawer.provenance()}


def heatmap_slide(models: HeatmapModels, slide_path: Path, features_path: Path, out_dir: Path,
                  params: HeatmapSettings, patient: PatientPrediction | None = None,
                  mpp: MPPChoice = None) -> str:
    """One slide into ``<out_dir>/<stem>/``; returns batch.DONE or batch.SKIPPED (finished with the same inputs).

    Without a slide table the held-out check takes the patient the models recorded for this feature
    file (a slide no model saw is held out from all of them); the title shows the slide's own prediction.
    """
    stem = slide_stem(slide_path)
    final = out_dir / stem
    drawer = patient.drawer if patient is not None else models.for_slide(features_path.stem)
    fingerprint = _fingerprint(drawer, features_path, params, patient)
    if _is_done(final, fingerprint):
        return batch.SKIPPED
    for stale in out_dir.glob(f".{stem}.partial-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = out_dir / f".{stem}.partial-{os.getpid()}"
    tmp.mkdir()
    try:
        summary = draw_slide(drawer, slide_path, features_path, tmp, stem, params, patient, mpp)
        (tmp / DONE_FILE).write_text(jsonio.dumps({**summary, "inputs": fingerprint}, indent=1))
        _publish(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(tmp)
    return batch.DONE


def run_heatmaps(
    model: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | LoadedModel,
    slides_dir: str | os.PathLike[str],
    features_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    settings: HeatmapSettings | None = None,
    *,
    mpp: MPPChoice = None,
    device: str = "auto",
    slide_table: str | os.PathLike[str] | None = None,
    patient_col: str = "PATIENT",
    filename_col: str = "FILENAME",
) -> HeatmapRun:
    """Draw heatmaps, top tiles and QuPath files for ``settings.slides`` (or up to ``max_slides`` with features).

    ``model`` is a checkpoint, several, or a crossval folder (its fold models): each patient is
    drawn by the models that held it out (:mod:`slidepredict.heatmaps.models`). A slide that fails
    is reported and the others go on. With a ``slide_table``, titles show the patient's
    prediction over all its slides.
    """
    settings = settings or HeatmapSettings()
    models = load_heatmap_models(model, device)
    pairs = select_slides(Path(slides_dir), Path(features_dir), settings.slides or None)
    if settings.max_slides and not settings.slides and len(pairs) > settings.max_slides:
        log.info("drawing %d of %d slides (max_slides; name slides with --slide, or --max-slides 0 for all)",
                 settings.max_slides, len(pairs))
        pairs = pairs[: settings.max_slides]
    if slide_table is None:
        models.require_slide_records()
    out = batch.check_writable(out_dir)
    features_of = dict(pairs)
    patients = {} if slide_table is None else patient_predictions(
        models, features_dir, slide_table, [f.stem for _, f in pairs], patient_col, filename_col)
    run = HeatmapRun()
    run.result = batch.run_per_slide(
        [p for p, _ in pairs],
        lambda p: heatmap_slide(models, p, features_of[p], out, settings, patients.get(features_of[p].stem), mpp),
        f"Heatmaps ({models.first.meta.target})",
    )
    finished = set(run.result.done) | set(run.result.skipped)
    run.folders = [out / slide_stem(p) for p, _ in pairs if p in finished]
    return run
