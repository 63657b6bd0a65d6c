"""Heatmaps: output contract (CSV, GeoJSON for QuPath, OME-TIFF, overlays, top tiles), reruns, bad inputs, end to end."""

from __future__ import annotations

import json
import re
import shutil
import uuid
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image
from typer.testing import CliRunner

from slidepredict.cli import app
from slidepredict.core.errors import SlidePredictError
from slidepredict.featurefile import FeatureSpec, read_features, write_h5_atomic
from slidepredict.heatmaps import HeatmapSettings, rank_normalise, run_heatmaps


def heatmaps(model, slides_dir, features, out, slides=None, **kw):
    """Folders drawn by run_heatmaps with these settings (every slide unless named)."""
    opts = {k: kw.pop(k) for k in list(kw) if k in HeatmapSettings.model_fields}
    settings = HeatmapSettings(slides=slides or [], max_slides=0, **opts)
    return run_heatmaps(model, slides_dir, features, out, settings, **kw).folders
from slidepredict.core.names import safe_name
from slidepredict.heatmaps.overlay import map_scale, tile_index_map
from slidepredict.heatmaps.qupath import score_stack, write_ome_tiff
from slidepredict.heatmaps.scores import TileScores
from slidepredict.mil import create_mil
from slidepredict.demo.synthetic import make_slide
from slidepredict.training import ModelMeta, save_checkpoint

runner = CliRunner()
DIM, CATS, TILE0, MPP = 12, ["MSS", "MSI-H"], 128, 0.5
SPEC = FeatureSpec(encoder="fake-encoder", encoder_hash="h0", dim=DIM, tile_size_um=TILE0 * MPP, tile_size_px=64)


def _features(path: Path, width: int, height: int, seed: int, **attrs: object) -> np.ndarray:
    """A feature file on the gap-free tile grid (every tile a tissue tile), with our h5 attrs."""
    xs, ys = np.meshgrid(np.arange(0, width, TILE0), np.arange(0, height, TILE0))
    coords = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.int64)
    feats = np.random.default_rng(seed).normal(size=(len(coords), DIM)).astype(np.float32)
    base = {"encoder": SPEC.encoder, "encoder_hash": SPEC.encoder_hash, "tile_size_um": SPEC.tile_size_um,
            "tile_size_px": SPEC.tile_size_px, "tile_size_level0": TILE0, "mpp": MPP,
            "slide_width": width, "slide_height": height}
    write_h5_atomic(path, {"features": feats, "coords": coords}, {**base, **attrs})
    return coords


def _model(path: Path, spec: FeatureSpec) -> Path:
    """A random-init attention model trained, as far as its checkpoint says, on features of ``spec``."""
    head = create_mil("attention", DIM, len(CATS))
    meta = ModelMeta(model="attention", model_hparams=dict(head.hparams), target="MSI", categories=CATS,
                     features=spec.to_dict(), train_patients=["p1", "p2"], slides={"p1": "p1", "p2": "p2"})
    return save_checkpoint(path, head.state_dict(), meta, {})


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two small synthetic slides with features, one random-init attention model."""
    root = tmp_path_factory.mktemp("hm")
    for i, (w, h) in enumerate([(768, 512), (512, 640)]):
        make_slide(root / "slides" / f"S{i}.tif", seed=i, width=w, height=h, mpp=MPP, signal=True)
        _features(root / "features" / f"S{i}.h5", w, h, seed=i)
    _model(root / "model.ckpt", SPEC)
    out = root / "out"
    folders = heatmaps(root / "model.ckpt", root / "slides", root / "features", out, topk=3, thumb_px=512)
    return {"root": root, "out": out, "model": root / "model.ckpt", "folders": folders}  # type: ignore[dict-item]


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()} if folder.exists() else set()


def test_one_complete_folder_per_slide(setup: dict) -> None:
    out = setup["out"]
    assert setup["folders"] == [out / "S0", out / "S1"]
    files = _files(out / "S0")
    expected = {"tile-scores.csv", "S0.geojson", "S0_heatmap_MSS.png", "S0_heatmap_MSI-H.png", "S0_heatmap_attention.png",
                "S0_tiles.png", "S0_probability.ome.tif", "heatmaps.json"}
    assert expected <= files
    tiles = sorted(f for f in files if f.startswith("tiles/"))
    assert len(tiles) == 2 * 3 * len(CATS) and all(f.endswith(".jpg") for f in tiles)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no partial folders left
    with Image.open(next((out / "S0" / "tiles").glob("MSS_top_01_x*_y*.jpg"))) as im:
        assert im.size == (64, 64)  # the feature file's tile_size_px
    summary = json.loads((out / "S0" / "heatmaps.json").read_text())
    assert summary["n_tiles"] == 24 and summary["prediction"] in CATS and summary["target"] == "MSI"


def test_tile_scores_csv_matches_coords(setup: dict) -> None:
    df = pd.read_csv(setup["out"] / "S0" / "tile-scores.csv")
    assert list(df.columns) == ["x", "y", "width", "height", "attention", "attention_raw", *CATS]
    coords = read_features(setup["root"] / "features" / "S0.h5").coords
    assert (df[["x", "y"]].to_numpy() == coords).all()
    assert (df["width"] == TILE0).all() and (df["height"] == TILE0).all()
    assert df["attention"].max() == pytest.approx(1.0) and (df["attention"] > 0).all()
    assert df["attention_raw"].sum() == pytest.approx(1.0, abs=1e-4)
    assert np.allclose(df[CATS].sum(axis=1), 1.0, atol=1e-4)
    # rank-normalised attention orders tiles exactly as the raw attention does
    assert (np.argsort(df["attention"].to_numpy(), kind="stable") == np.argsort(df["attention_raw"].to_numpy(), kind="stable")).all()


def test_geojson_is_what_qupath_imports(setup: dict) -> None:
    """QuPath 0.4/0.5: FeatureCollection, closed Polygon ring, objectType, classification {name, color}, measurements map."""
    geo = json.loads((setup["out"] / "S1" / "S1.geojson").read_text())
    df = pd.read_csv(setup["out"] / "S1" / "tile-scores.csv")
    assert geo["type"] == "FeatureCollection" and len(geo["features"]) == len(df)
    ids = set()
    for feat, (_, row) in zip(geo["features"], df.iterrows()):
        assert feat["type"] == "Feature" and feat["geometry"]["type"] == "Polygon"
        ring = feat["geometry"]["coordinates"][0]
        x, y, s = int(row["x"]), int(row["y"]), int(row["width"])
        assert ring == [[x, y], [x + s, y], [x + s, y + s], [x, y + s], [x, y]]
        props = feat["properties"]
        assert props["objectType"] == "detection"
        assert props["classification"]["name"] == CATS[int(np.argmax(row[CATS].to_numpy()))]
        colour = props["classification"]["color"]
        assert len(colour) == 3 and all(isinstance(c, int) and 0 <= c <= 255 for c in colour)
        meas = props["measurements"]
        assert isinstance(meas, dict) and list(meas) == ["attention", "attention_raw", *CATS]
        assert all(isinstance(v, float) for v in meas.values())
        assert meas["attention"] == pytest.approx(row["attention"], abs=1e-5)
        ids.add(str(uuid.UUID(feat["id"])))
    assert len(ids) == len(df)


def test_ome_tiff_is_aligned_with_the_slide(setup: dict) -> None:
    path = setup["out"] / "S1" / "S1_probability.ome.tif"
    df = pd.read_csv(setup["out"] / "S1" / "tile-scores.csv")
    scale = map_scale((512, 640), TILE0, 4096)
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome
        series = tif.series[0]
        assert series.axes == "CYX" and series.shape == (len(CATS) + 2, 640 // scale, 512 // scale)
        data = series.asarray()
        xml = tif.ome_metadata
    assert f'PhysicalSizeX="{MPP * scale}"' in xml and "MSI-H" in xml and "attention" in xml
    h, w = data.shape[1:]
    assert w / h == pytest.approx(512 / 640, rel=0.02)
    r = df.iloc[5]
    cy, cx = int((r["y"] + TILE0 / 2) // scale), int((r["x"] + TILE0 / 2) // scale)
    assert data[1, cy, cx] == pytest.approx(r["MSI-H"], abs=1e-5) and data[2, cy, cx] == pytest.approx(r["attention"], abs=1e-5)
    assert data[3, cy, cx] == 1.0  # the tiles channel: inside a tile
    # channel names and colours as docs/heatmaps.md lists them
    names = re.findall(r'<Channel [^>]*Name="([^"]+)"', xml)
    colours = [int(c) for c in re.findall(r'<Channel [^>]*Color="(-?\d+)"', xml)]
    assert names == [*CATS, "attention", "tiles"] and len(colours) == 4
    assert colours[2] == (255 << 24 | 140 << 16 | 0 << 8 | 255) - (1 << 32)  # attention: orange, opaque


def test_ome_tiff_pyramid_levels(tmp_path: Path) -> None:
    coords = np.array([[0, 0], [200, 100], [900, 700]], dtype=np.int64)
    scores = TileScores(coords=coords, size0=100, attention=np.array([1 / 3, 2 / 3, 1.0]), attention_raw=np.full(3, 1 / 3),
                        class_scores=np.array([[0.2, 0.8], [0.5, 0.5], [0.9, 0.1]]), categories=["a", "b"], target="T",
                        probs=np.array([0.4, 0.6]))
    stack, names = score_stack(scores, ((0, 0), (1000, 800)), 1)
    assert names == ["a", "b", "attention", "tiles"] and stack.shape == (4, 800, 1000)
    assert np.isnan(stack[:3, 50, 150]).all() and stack[0, 150, 250] == pytest.approx(0.5)
    assert stack[3, 50, 150] == 0.0 and stack[3, 150, 250] == 1.0  # no tile vs tile, whatever the score
    write_ome_tiff(stack, names, tmp_path / "m.ome.tif", 0.5)
    with tifffile.TiffFile(tmp_path / "m.ome.tif") as tif:
        levels = tif.series[0].levels
        assert [lv.shape for lv in levels] == [(4, 800, 1000), (4, 400, 500), (4, 200, 250)]
        low = levels[1].asarray()
    assert low[0, 0, 0] == pytest.approx(0.2) and np.isnan(low[0, 0, 60])
    # in a bounds frame (QuPath crops to openslide.bounds) the map starts at the bounds origin
    shifted, _ = score_stack(scores, ((100, 50), (900, 750)), 1)
    assert shifted.shape == (4, 750, 900)
    assert shifted[0, 100 - 50, 200 - 100] == pytest.approx(0.5) and shifted[0, 700 - 50, 900 - 100] == pytest.approx(0.9)
    assert np.isnan(shifted[0, 0, 0])  # the tile at level-0 (0, 0) lies left of the bounds: not in QuPath's image


def test_overlay_is_tissue_only_and_readable(setup: dict) -> None:
    with Image.open(setup["out"] / "S0" / "S0_heatmap_MSI-H.png") as im:
        assert im.width > 512 and im.height > 300  # thumbnail at native size plus title and colour bar
    index = tile_index_map(np.array([[0, 0], [128, 0]]), 128, 64.0, (4, 6))
    assert index.tolist() == [[0, 0, 1, 1, -1, -1]] * 2 + [[-1] * 6] * 2


def test_rank_normalise_and_names() -> None:
    assert rank_normalise(np.array([0.1, 0.5, 0.5, 0.2])).tolist() == [0.25, 0.875, 0.875, 0.5]
    assert rank_normalise(np.array([])).size == 0
    assert safe_name("wt/mut") == "wt_mut" and safe_name("MSI-H") == "MSI-H"


def test_rerun_skips_and_new_settings_redo(setup: dict) -> None:
    out, root = setup["out"], setup["root"]
    csv = out / "S0" / "tile-scores.csv"
    before = csv.stat().st_mtime_ns
    run = run_heatmaps(setup["model"], root / "slides", root / "features", out, HeatmapSettings(slides=["S0"], topk=3, thumb_px=512))
    assert run.result.skipped == [root / "slides" / "S0.tif"] and csv.stat().st_mtime_ns == before
    other = root / "out-topk1"
    run = run_heatmaps(setup["model"], root / "slides", root / "features", other, HeatmapSettings(slides=["S0.tif"], topk=1, thumb_px=256))
    assert run.folders == [other / "S0"] and len(list((other / "S0" / "tiles").iterdir())) == 2 * len(CATS)


def test_cli_runs_and_reports(setup: dict, tmp_path: Path) -> None:
    root = setup["root"]
    res = runner.invoke(app, ["heatmaps", "--model", str(setup["model"]), "--slides", str(root / "slides"),
                              "--features", str(root / "features"), "--out", str(tmp_path), "--slide", "S1",
                              "--topk", "0", "--thumb-px", "256"])
    assert res.exit_code == 0, res.output
    assert "1 done, 0 already complete, 0 failed" in res.output
    assert not (tmp_path / "S1" / "tiles").exists() and (tmp_path / "S1" / "S1.geojson").is_file()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--slide": "NOPE"}, r"--slide NOPE: no such slide in \S+slides \(2 slides there, e\.g\. S0, S1\)"),
        ({"--topk": "-1"}, r"'--topk': Input should be greater than or equal to 0 \(got -1\)"),
        ({"--features": "{tmp}/none"}, r"features folder not found: \S+/none; run `slidepredict extract` first"),
        ({"--model": "{tmp}/none.ckpt"}, r"model checkpoint not found: \S+/none\.ckpt"),
    ],
)
def test_bad_options_are_one_line_errors(setup: dict, tmp_path: Path, change: dict[str, str], message: str) -> None:
    root = setup["root"]
    opts = {"--model": str(setup["model"]), "--slides": str(root / "slides"), "--features": str(root / "features"),
            "--out": str(tmp_path / "o")}
    opts.update({k: v.format(tmp=tmp_path) for k, v in change.items()})
    res = runner.invoke(app, ["heatmaps", *[a for kv in opts.items() for a in kv]])
    assert res.exit_code == 2
    assert re.fullmatch(f"Error: {message}", " ".join(res.output.split())), res.output
    assert _files(tmp_path / "o") == set()


def test_a_bad_slide_fails_alone_and_leaves_nothing(setup: dict, tmp_path: Path) -> None:
    """Wrong encoder on one slide, features of another slide size on a second: both one line, the third is drawn."""
    root = tmp_path
    shutil.copytree(setup["root"] / "slides", root / "slides")
    shutil.copytree(setup["root"] / "features", root / "features")
    shutil.copy(root / "slides" / "S0.tif", root / "slides" / "S2.tif")
    _features(root / "features" / "S2.h5", 768, 512, seed=2, encoder="other-encoder")
    _features(root / "features" / "S1.h5", 700, 500, seed=1)
    (root / "slides" / "S3.tif").write_bytes((root / "slides" / "S0.tif").read_bytes())  # no features: reported
    run = run_heatmaps(setup["model"], root / "slides", root / "features", root / "out", HeatmapSettings(topk=1, thumb_px=256))
    assert run.folders == [root / "out" / "S0"] and run.result.exit_code == 1
    reasons = dict((p.name, r) for p, r in run.result.failed)
    assert reasons["S1.tif"] == (
        f"{root / 'features' / 'S1.h5'} was extracted from a 700 x 500 px slide but S1.tif is 512 x 640 px; "
        "point --features at this slide's feature files"
    )
    assert f"come from encoder 'other-encoder' (hash h0) but model {setup['model']} was trained on 'fake-encoder'" in reasons["S2.tif"]
    assert sorted(p.name for p in (root / "out").iterdir()) == ["S0"]


def test_features_extracted_with_other_settings_fail_alone(setup: dict, tmp_path: Path) -> None:
    """Stain normalisation and tile pixels are checked per slide; a file that records neither (S2) is drawn."""
    root = tmp_path
    shutil.copytree(setup["root"] / "slides", root / "slides")
    shutil.copy(root / "slides" / "S0.tif", root / "slides" / "S2.tif")
    model = _model(root / "macenko.ckpt", replace(SPEC, stain_norm="macenko"))
    _features(root / "features" / "S0.h5", 768, 512, seed=0, stain_norm="none")
    _features(root / "features" / "S1.h5", 512, 640, seed=1, stain_norm="macenko", tile_size_px=128)
    shutil.copy(setup["root"] / "features" / "S0.h5", root / "features" / "S2.h5")
    run = run_heatmaps(model, root / "slides", root / "features", root / "out", HeatmapSettings(topk=0, thumb_px=256))
    assert run.folders == [root / "out" / "S2"]
    reasons = dict((p.name, r) for p, r in run.result.failed)
    assert reasons == {
        "S0.tif": f"features in {root / 'features' / 'S0.h5'} use stain_norm='none' but model {model} was trained on "
                  "stain_norm='macenko'; re-extract them with --stain-norm macenko",
        "S1.tif": f"features in {root / 'features' / 'S1.h5'} use tile_size_px=128 but model {model} was trained on "
                  "tile_size_px=64; re-extract them with --tile-px 64",
    }


def test_no_slide_has_features(setup: dict, tmp_path: Path) -> None:
    (tmp_path / "features").mkdir()
    with pytest.raises(SlidePredictError, match=r"^none of the 2 slides in .* has a feature file in .*features "
                                                r"\(expected <slide>\.h5\); run `slidepredict extract` first$"):
        heatmaps(setup["model"], setup["root"] / "slides", tmp_path / "features", tmp_path / "out")
    shutil.copy(setup["root"] / "features" / "S0.h5", tmp_path / "features" / "S0.h5")
    with pytest.raises(SlidePredictError, match=r"^--slide S1: no feature file .*S1\.h5; run `slidepredict extract` on it first$"):
        heatmaps(setup["model"], setup["root"] / "slides", tmp_path / "features", tmp_path / "out", slides=["S1"])
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_end_to_end_positive_score_finds_the_planted_region(tmp_path: Path) -> None:
    """generate -> tile -> extract (stain-texture) -> train -> heatmaps: MSI tile scores rank planted tiles first."""
    from sklearn.metrics import roc_auc_score

    from slidepredict.cohort import build_cohort
    from slidepredict.features import ExtractSettings, extract
    from slidepredict.demo.synthetic import make_cohort
    from slidepredict.tiling import TilingSettings
    from slidepredict.training import TrainSettings, train_final

    cohort = make_cohort(tmp_path / "cohort", n_patients=10, seed=1, signal_fraction=0.2)
    result = extract([cohort.slides_dir], tmp_path / "features", ExtractSettings(encoder="stain-texture", workers=0, batch_size=128),
                     coords_dir=tmp_path / "coords", tiling=TilingSettings(tile_um=128, tile_px=128))  # 1 um/px
    assert result.exit_code == 0
    train = build_cohort(tmp_path / "features", cohort.slide_table, cohort.clini_table, target=cohort.target)
    ckpt = train_final(train, tmp_path / "model", TrainSettings(steps=400, min_steps=200, bag_size=256))
    positive = [s for slides in cohort.slides.values() for s in slides if s.has_signal]
    folders = heatmaps(ckpt, cohort.slides_dir, tmp_path / "features", tmp_path / "heatmaps",
                       slides=[s.path.stem for s in positive], topk=2, thumb_px=384)
    assert len(folders) == len(positive) >= 3
    truth, score = [], []
    for slide, folder in zip(positive, folders):
        df = pd.read_csv(folder / "tile-scores.csv")
        truth.append(slide.in_signal(df[["x", "y"]].to_numpy(), int(df["width"].iloc[0])))
        score.append(df[cohort.classes[1]].to_numpy())
    auroc = roc_auc_score(np.concatenate(truth), np.concatenate(score))
    print(f"tile AUROC of the MSI score against the planted region: {auroc:.3f}")
    assert auroc >= 0.9, auroc


def test_titles_show_the_patient_prediction_over_all_its_slides(setup: dict[str, Path], tmp_path: Path) -> None:
    """With a slide table, a two-slide patient's heatmaps carry the prediction from both slides' tiles."""
    from slidepredict.heatmaps.overlay import map_title
    from slidepredict.training import load_model, predict_bag

    root = setup["root"]
    table = tmp_path / "slides.csv"
    table.write_text("PATIENT,FILENAME\nP1,S0.tif\nP1,S1.tif\n")
    out = tmp_path / "out"
    folders = heatmaps(setup["model"], root / "slides", root / "features", out, topk=0, thumb_px=256, slide_table=table)
    assert folders == [out / "S0", out / "S1"]
    loaded = load_model(setup["model"])
    bags = [read_features(root / "features" / f"S{i}.h5") for i in (0, 1)]
    both, _, _ = predict_bag(loaded, np.concatenate([b.features for b in bags]), np.concatenate([b.coords for b in bags]))
    alone, _, _ = predict_bag(loaded, bags[0].features, bags[0].coords)
    assert not np.allclose(both, alone)
    for folder in folders:
        done = json.loads((folder / "heatmaps.json").read_text())
        assert done["patient"] == "P1"
        np.testing.assert_allclose([done["probabilities"][c] for c in CATS], both, rtol=1e-6)
    scores = TileScores(coords=np.zeros((1, 2), np.int64), size0=1, attention=np.ones(1), attention_raw=np.ones(1),
                        class_scores=np.full((1, 2), 0.5), categories=CATS, target="MSI", probs=both, patient="P1")
    title, _ = map_title("S0", CATS[0], scores)
    assert title.splitlines()[1].startswith("patient P1: prediction MSI = ")


def _strict(text: str) -> object:
    """Parse as a strict JSON parser would: NaN, Infinity and -Infinity are errors."""
    def refuse(name: str) -> None:
        raise ValueError(f"non-finite number {name} in JSON")
    return json.loads(text, parse_constant=refuse)


def test_geojson_leaves_non_finite_measurements_out(tmp_path: Path) -> None:
    from slidepredict.heatmaps.qupath import write_geojson

    scores = TileScores(coords=np.array([[0, 0], [100, 0]]), size0=100, attention=np.array([0.5, 1.0]),
                        attention_raw=np.array([np.nan, 1.0]), class_scores=np.array([[0.2, 0.8], [np.inf, 0.1]]),
                        categories=["a", "b"], target="T", probs=np.array([0.4, 0.6]))
    geo = _strict(write_geojson(scores, tmp_path / "s.geojson", "s").read_text())
    first, second = (f["properties"]["measurements"] for f in geo["features"])
    assert first == {"attention": 0.5, "a": 0.2, "b": 0.8}  # attention_raw was NaN: missing, as QuPath reads NaN
    assert second == {"attention": 1.0, "attention_raw": 1.0, "b": 0.1}


def test_slide_bounds_shift_the_qupath_exports_only(setup: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A slide with openslide.bounds (MRXS, some NDPI/SCN): QuPath shows the crop, so its files are relative to it."""
    from slidepredict.slide import Slide, open_slide

    root = setup["root"]
    with open_slide(root / "slides" / "S1.tif", mpp=MPP) as slide:
        assert slide.qupath_frame == ((0, 0), (512, 640))  # no bounds: the whole slide
        slide.backend.properties = {"openslide.bounds-x": "128", "openslide.bounds-y": "256",
                                    "openslide.bounds-width": "384", "openslide.bounds-height": "384"}
        assert slide.qupath_frame == ((128, 256), (384, 384))
    monkeypatch.setattr(Slide, "qupath_frame", property(lambda self: ((128, 256), (384, 384))))
    folder, = heatmaps(setup["model"], root / "slides", root / "features", tmp_path / "out", slides=["S1"], topk=0,
                       thumb_px=256)
    plain = setup["out"] / "S1"
    assert (folder / "tile-scores.csv").read_text() == (plain / "tile-scores.csv").read_text()  # level-0, unchanged
    shifted, original = (_strict((f / "S1.geojson").read_text()) for f in (folder, plain))
    for a, b in zip(shifted["features"], original["features"]):
        ring_a, ring_b = np.array(a["geometry"]["coordinates"][0]), np.array(b["geometry"]["coordinates"][0])
        assert (ring_b - ring_a == [128, 256]).all()
    assert shifted["properties"]["slidepredict"]["frame"]["level0_origin"] == [128, 256]
    scale = json.loads((folder / "heatmaps.json").read_text())["map_downsample"]
    with tifffile.TiffFile(folder / "S1_probability.ome.tif") as tif:
        assert tif.series[0].shape[1:] == (-(-384 // scale), -(-384 // scale))  # the bounds, not the slide
        data = tif.series[0].asarray()
    r = pd.read_csv(folder / "tile-scores.csv").query("x == 256 and y == 384").iloc[0]
    cy, cx = int((r["y"] - 256 + TILE0 / 2) // scale), int((r["x"] - 128 + TILE0 / 2) // scale)
    assert data[0, cy, cx] == pytest.approx(r[CATS[0]], abs=1e-5)


def test_continuous_target_maps_each_tiles_value_in_units(setup: dict, tmp_path: Path) -> None:
    """A score model: tile-scores.csv and GeoJSON hold values in the target's units, the PNG a fixed colour scale."""
    from slidepredict.heatmaps.overlay import map_title
    from slidepredict.heatmaps.scores import value_range

    head = create_mil("attention", DIM, 1)
    meta = ModelMeta(model="attention", model_hparams=dict(head.hparams), target="SCORE", categories=[],
                     features=SPEC.to_dict(), train_patients=["p1"], target_kind="continuous", target_scale=[5.0, 2.0],
                     slides={"p1": "p1"})
    model = save_checkpoint(tmp_path / "score.ckpt", head.state_dict(), meta, {})
    root = setup["root"]
    folder, = heatmaps(model, root / "slides", root / "features", tmp_path / "out", slides=["S0"], topk=0, thumb_px=256)
    df = pd.read_csv(folder / "tile-scores.csv")
    assert list(df.columns) == ["x", "y", "width", "height", "attention", "attention_raw", "SCORE"]
    assert 1.0 < df.SCORE.mean() < 9.0 and df.SCORE.std() > 0  # units (mean 5, SD 2), not probabilities
    info = json.loads((folder / "heatmaps.json").read_text())
    assert set(info) >= {"value"} and "probabilities" not in info
    assert (info["value"] - 5.0) / 2.0 == pytest.approx(
        float(np.sum(df.attention_raw * (df.SCORE - 5.0) / 2.0)), abs=1e-4)  # attention-weighted tile values
    assert (folder / "S0_heatmap_SCORE.png").is_file()
    assert value_range([5.0, 2.0]) == (1.0, 9.0)
    scores = TileScores(coords=np.zeros((1, 2), np.int64), size0=8, attention=np.ones(1), attention_raw=np.ones(1),
                        class_scores=np.array([[4.0]]), categories=["SCORE"], target="SCORE", probs=np.array([4.25]),
                        value_range=(1.0, 9.0))
    assert map_title("S0", "SCORE", scores) == ("S0: each tile's own SCORE\nprediction SCORE = 4.25",
                                                 "tile value of SCORE (1 to 9)")
