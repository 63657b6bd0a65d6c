"""Image cohorts of cells: the table's checks, image reading and normalisation, cell units, embedding.

Synthetic images (``slidepredict.demo.cells``) know where every nucleus is, so the detectors are
scored against the truth; the real CRC tiles in tests/data are read as an 8-class image cohort.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image

from slidepredict.cells.images import Normalisation, load_rgb, read_image
from slidepredict.cells.table import read_image_table
from slidepredict.cells.units import UnitSettings, crop, make_units
from slidepredict.core.errors import CohortError, SlideError
from slidepredict.demo.cells import CellImageSpec, make_cell_images

CRC = Path(__file__).parent / "data" / "tiles" / "crc-val-he-7k"


@pytest.fixture(scope="module")
def field(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("cells")
    return make_cell_images(root, CellImageSpec(classes=("round", "elongated", "fragmented")))


def _message(fn, *args, **kwargs) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises((CohortError, SlideError)) as e:
        fn(*args, **kwargs)
    return str(e.value)


def test_table_checks_name_the_file_and_the_fix(field, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    images = field.root / "images"
    table = pd.read_csv(field.table, dtype=str)
    path = tmp_path / "plate.csv"

    def check(df: pd.DataFrame, **kwargs) -> str:  # type: ignore[no-untyped-def]
        df.to_csv(path, index=False)
        return _message(read_image_table, path, images, ["LABEL"], **kwargs)

    assert check(table.iloc[1:]) == (f"1 image(s) in {images} have no row in plate.csv: 'A01_s1.tif'; "
                                     "add rows for them or move them out of the folder")
    extra = pd.concat([table, table.iloc[:1].assign(IMAGE="Z99_s1.tif")])
    assert check(extra) == (f"1 row(s) of plate.csv name images not in {images}: 'Z99_s1.tif'; "
                            "fix the names or remove the rows")
    assert check(table.assign(WELL=["Q05"] + list(table.WELL[1:]))) == (
        "'WELL' in plate.csv has 'Q05' (image 'A01_s1.tif'), not a well of a 96-well plate (rows A-H, "
        "columns 1-12); fix the well or set --plate-format")
    assert check(table.assign(CONTROL="DMSO"), control="dsmo") == (
        "control 'dsmo' occurs nowhere in 'CONTROL' of plate.csv (values: 'DMSO'); check the spelling")
    assert check(table.assign(MPP=["0.65"] * 7 + ["abc"])) == (
        "'MPP' in plate.csv must be a positive number of microns per pixel; image 'B02_s2.tif' has 'abc'")
    assert check(pd.concat([table, table.iloc[:1]])) == "plate.csv lists 'A01_s1.tif' more than once; one row per image"
    assert check(table.drop(columns="LABEL")) == (
        "image table column 'LABEL' not in plate.csv (columns: IMAGE, PLATE, WELL, MPP, CONTROL); "
        "check the spelling or set the column name option")
    # the extension may be left out, wells are normalised ('b2' -> 'B02'), a 384-well plate takes row P
    ok = table.assign(IMAGE=table.IMAGE.str.replace(".tif", ""), WELL=["b2", "A1", "P24", "A01", "A02", "B01", "B2", "c3"])
    ok.to_csv(path, index=False)
    cohort = read_image_table(path, images, ["LABEL"], plate_wells=384)
    assert cohort.table.WELL.tolist() == ["B02", "A01", "P24", "A01", "A02", "B01", "B02", "C03"]
    assert [p.name for p in cohort.paths] == table.IMAGE.tolist()


def test_images_of_every_kind_become_8_bit_rgb(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    grey16 = (rng.random((40, 50)) * 600 + 100).astype(np.uint16)  # a dim 16-bit fluorescence image
    tifffile.imwrite(tmp_path / "g16.tif", grey16)
    Image.fromarray((rng.random((40, 50)) * 255).astype(np.uint8)).save(tmp_path / "g8.png")
    Image.fromarray((rng.random((40, 50, 3)) * 255).astype(np.uint8)).save(tmp_path / "rgb.png")
    tifffile.imwrite(tmp_path / "stack.tif", np.stack([grey16, grey16 // 2, grey16 // 3]), photometric="minisblack")
    for name, channels in (("g16.tif", 1), ("g8.png", 1), ("rgb.png", 3), ("stack.tif", 3)):
        assert read_image(tmp_path / name).shape == (40, 50, channels)
        rgb = load_rgb(tmp_path / name)
        assert rgb.shape == (40, 50, 3) and rgb.dtype == np.uint8
        assert rgb.max() == 255 and rgb.min() == 0  # stretched between percentiles, per channel
    assert (load_rgb(tmp_path / "g16.tif")[:, :, 0] == load_rgb(tmp_path / "g16.tif")[:, :, 2]).all()  # grey
    two = load_rgb(tmp_path / "stack.tif", Normalisation(channels=(2, 0)))
    assert (two[:, :, 2] == 0).all() and two[:, :, 0].max() == 255
    tifffile.imwrite(tmp_path / "blank.tif", np.full((30, 30), 812, np.uint16))
    assert _message(load_rgb, tmp_path / "blank.tif") == (
        f"{tmp_path / 'blank.tif'}: every pixel has the value 812 (16-bit); the image is blank (a failed export?); "
        "re-export it or remove it and its table row")
    assert _message(load_rgb, tmp_path / "g8.png", Normalisation(channels=(1,))) == (
        f"{tmp_path / 'g8.png'}: has 1 channel(s); channels [1] were asked for")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    assert _message(read_image, tmp_path / "broken.png").startswith(f"{tmp_path / 'broken.png'}: cannot be read as an image")


def test_a_cell_looks_the_same_whatever_its_neighbours(tmp_path: Path) -> None:
    """Per-image stretching makes one nucleus dimmer beside brighter ones; cohort and fixed ranges do not."""
    from slidepredict.cells.images import cohort_ranges
    from slidepredict.cells.settings import CellSettings

    lone = np.full((60, 60), 200, np.uint16)
    lone[10:20, 10:20] = 1200
    crowded = lone.copy()
    crowded[30:50, 30:50] = 3000  # a brighter neighbour in the same field
    tifffile.imwrite(tmp_path / "lone.tif", lone)
    tifffile.imwrite(tmp_path / "crowded.tif", crowded)
    per_image = Normalisation(scope="image")
    assert load_rgb(tmp_path / "lone.tif", per_image)[15, 15, 0] == 255
    assert load_rgb(tmp_path / "crowded.tif", per_image)[15, 15, 0] == 91  # the same nucleus, dimmed by its neighbour
    ranges = cohort_ranges([tmp_path / "lone.tif", tmp_path / "crowded.tif"], Normalisation())
    assert ranges == ((200.0, 3000.0),)
    fixed = Normalisation(ranges=ranges)
    assert load_rgb(tmp_path / "lone.tif", fixed)[15, 15, 0] == load_rgb(tmp_path / "crowded.tif", fixed)[15, 15, 0] == 91
    assert fixed.describe() == "grey levels 200-3000, channels []"
    assert _message(load_rgb, tmp_path / "lone.tif", Normalisation(ranges=((0, 1), (0, 1)))) == (
        f"{tmp_path / 'lone.tif'}: has 1 channel(s) where the cohort's intensity range has 2; one cohort's images "
        "need the same channels (or set channels)")
    with pytest.raises(ValueError, match="give LO HI pairs, one per channel, each HI above its LO"):
        CellSettings(images=tmp_path, table=tmp_path / "t.csv", intensity_range=[300, 200])


@pytest.mark.parametrize("detector", ["nuclei", "brightfield"])
def test_detectors_find_the_planted_nuclei(field, detector: str) -> None:  # type: ignore[no-untyped-def]
    """Round and elongated nuclei: every one found once, centre within 5 px (fragmented ones are several objects)."""
    table = pd.read_csv(field.table)
    for name, label in zip(table.IMAGE, table.LABEL):
        if label == "fragmented":
            continue
        path = field.root / "images" / name
        boxes = make_units(load_rgb(path), path, name, UnitSettings(kind=detector, size=48))
        found, truth = boxes[:, :2] + 24, field.centres[name]
        assert len(found) == len(truth), (name, len(found), len(truth))
        nearest = np.sqrt(((found[:, None] - truth[None]) ** 2).sum(-1)).min(0)
        assert (nearest < 5).all(), (name, nearest.max())


def test_masks_centroids_tiles_and_whole_images(field, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    name = "A01_s1.tif"
    path = field.root / "images" / name
    rgb = load_rgb(path)
    labels = np.zeros(rgb.shape[:2], np.uint16)
    labels[10:20, 30:42] = 1
    labels[100:130, 50:60] = 7
    labels[200:202, 5:7] = 3  # 4 px: below min_area, dropped
    (tmp_path / "masks").mkdir()
    tifffile.imwrite(tmp_path / "masks" / "A01_s1.tif", labels)
    boxes = make_units(rgb, path, name, UnitSettings(kind="mask", size=20, masks=tmp_path / "masks"))
    assert boxes.tolist() == [[26, 5, 20], [45, 105, 20]]  # centres (35.5, 14.5), (54.5, 114.5); halves round up
    assert _message(make_units, rgb, path, "B01_s1.tif", UnitSettings(kind="mask", masks=tmp_path / "masks")) == (
        f"no label mask for image 'B01_s1.tif' in {tmp_path / 'masks'} (expected B01_s1.tif or .png)")
    table = pd.DataFrame({"IMAGE": [name, name, "other.tif"], "X": [10.0, 200.0, 5.0], "Y": [20.0, 30.0, 5.0]})
    boxes = make_units(rgb, path, name, UnitSettings(kind="centroids", size=16, centroids=table))
    assert boxes.tolist() == [[2, 12, 16], [192, 22, 16]]
    assert len(make_units(rgb, path, name, UnitSettings(kind="tiles", size=100))) == 4  # 256 px: 2 x 2 whole tiles
    assert make_units(rgb[:, :200], path, name, UnitSettings(kind="image")).tolist() == [[-28, 0, 256]]
    edge = crop(rgb, np.array([-10, -10, 20]), 20)
    assert (edge[:10, :10] == 0).all() and (edge[10:, 10:] == rgb[:10, :10]).all()
    assert _message(make_units, rgb, path, name, UnitSettings(kind="cellpose")) == (
        "unknown unit 'cellpose'; --unit is one of image, tiles, nuclei, brightfield, mask, centroids")


def test_embedded_cells_are_a_cohort_of_the_slide_workflow(field, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Feature files + bags.csv that build_cohort reads as it reads slides; a rerun redoes nothing."""
    from slidepredict.cells.extract import BAGS_FILE, embed_cohort
    from slidepredict.cohort import build_cohort
    from slidepredict.featurefile import read_attrs
    from slidepredict.features._builder import load_encoder
    from slidepredict.features.extraction import Runner
    from slidepredict.features.settings import ExtractSettings

    cohort = read_image_table(field.table, field.root / "images", ["LABEL"])
    settings = ExtractSettings(encoder="stain-texture", threads=1)
    runner = Runner(load_encoder(settings.encoder, settings.weights), settings)
    units = UnitSettings(kind="nuclei", size=48)
    result = embed_cohort(cohort, tmp_path / "out", runner, units, bag="well")
    assert len(result.done) == 8 and not result.failed
    bags = pd.read_csv(tmp_path / "out" / BAGS_FILE)
    assert bags.BAG.tolist() == ["P1:A01", "P1:A01", "P1:A02", "P1:A02", "P1:B01", "P1:B01", "P1:B02", "P1:B02"]
    attrs = read_attrs(tmp_path / "out" / "features" / "A01_s1.h5")
    assert attrs["unit"] == "nuclei" and attrs["n_tiles"] == len(field.centres["A01_s1.tif"])
    assert attrs["mpp"] == pytest.approx(0.65) and attrs["tile_size_um"] == pytest.approx(48 * 0.65)
    wells = build_cohort(tmp_path / "out" / "features", tmp_path / "out" / BAGS_FILE, tmp_path / "out" / BAGS_FILE,
                         target="LABEL", patient_col="BAG")
    assert len(wells) == 4 and wells.categories == ["elongated", "fragmented", "round"]
    feats, where = wells.load_bag("P1:A01")
    assert feats.shape == (len(field.centres["A01_s1.tif"]) + len(field.centres["A01_s2.tif"]), 52)
    again = embed_cohort(cohort, tmp_path / "out", runner, units, bag="well")
    assert len(again.skipped) == 8 and not again.done


def test_real_crc_tiles_as_an_image_cohort(tmp_path: Path) -> None:
    """The 32 CRC-VAL-HE-7K tiles, one class per tile, read as whole-image units of an 8-class cohort."""
    rows = [{"IMAGE": p.name, "TISSUE": p.name.split("-")[0]} for p in sorted(CRC.glob("*.png"))]
    pd.DataFrame(rows).to_csv(tmp_path / "tiles.csv", index=False)
    cohort = read_image_table(tmp_path / "tiles.csv", CRC, ["TISSUE"])
    assert len(cohort.table) == 32 and cohort.table.TISSUE.nunique() == 8
    rgb = load_rgb(cohort.paths[0])
    assert rgb.shape == (224, 224, 3)
    assert make_units(rgb, cohort.paths[0], rows[0]["IMAGE"], UnitSettings(kind="image")).tolist() == [[0, 0, 224]]


def test_cells_command_and_its_config(field, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`slidepredict cells` from flags and from a config's cells: section; `run` trains, deploys and clusters them."""
    import json

    import yaml
    from typer.testing import CliRunner

    from slidepredict.cli import app
    from slidepredict.config import load_config
    from slidepredict.core.errors import SlidePredictError
    from slidepredict.pipeline.run import run_workflow

    args = ["--images", field.root / "images", "--image-table", field.table, "--encoder", "stain-texture",
            "--unit", "nuclei", "--unit-size", "48", "--bag", "well"]
    res = CliRunner().invoke(app, ["cells", *map(str, args), "--out", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    assert "8 done, 0 already complete, 0 failed" in res.output
    assert len(list((tmp_path / "a" / "features").glob("*.h5"))) == 8
    bad = CliRunner().invoke(app, ["cells", *map(str, args), "--unit", "cellpose", "--out", str(tmp_path / "b")])
    assert bad.exit_code == 2 and "'--unit' must be one of brightfield, centroids, image, mask, nuclei, tiles" in bad.output
    assert not (tmp_path / "b").exists()
    config = {"output_dir": str(tmp_path / "run"), "cohort": {"slides_dir": str(tmp_path)},
              "cells": {"images": str(field.root / "images"), "table": str(field.table), "unit": "tiles",
                        "unit_size": 128}, "extract": {"encoder": "stain-texture"}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    res = CliRunner().invoke(app, ["cells", "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "c")])
    assert res.exit_code == 0, res.output
    assert pd.read_csv(tmp_path / "c" / "bags.csv").BAG.tolist() == pd.read_csv(field.table).IMAGE.tolist()
    # `run` on an image cohort: no cohort: section needed; a deploy: plate with labels gets statistics
    other = make_cell_images(tmp_path / "other", CellImageSpec(wells=("C01", "C02", "D01", "D02"), treated=("C01", "D02"),
                                                               classes=("round", "elongated", "fragmented"), seed=5))
    config.pop("cohort")
    config.update(training={"targets": ["LABEL"], "model": "tile-vote", "crossval": False, "steps": 60,
                            "min_steps": 20, "restarts": 1, "bag_size": 64},
                  deploy={"slides_dir": str(other.root / "images"), "slide_table": str(other.table)},
                  clusters={"sample": "IMAGE", "group": "CONTROL", "k": 2})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    ctx = run_workflow(load_config(tmp_path / "c.yaml"))
    assert ctx.results["extract"] == "8 done, 0 already complete, 0 failed"
    assert ctx.results["tile"] is None and ctx.results["heatmaps"] is None
    assert len(list((tmp_path / "run" / "external" / "cells" / "features").glob("*.h5"))) == 8
    assert json.loads((tmp_path / "run" / "external" / "cells" / "normalisation.json").read_text())["ranges"] == \
        json.loads((tmp_path / "run" / "cells" / "normalisation.json").read_text())["ranges"]  # embedded alike
    assert "LABEL external validation: AUROC" in " ".join(ctx.headlines)  # the plate carries LABEL
    assert (tmp_path / "run" / "clusters" / "clusters.csv").is_file() and (tmp_path / "run" / "report.html").is_file()
    config["screen"] = {"score_class": "round", "control": "DMSO"}
    for drop, message in (("deploy", "screen: scores the images of a deploy: plate with a model trained on the cells: "
                                     "cohort; add cells:, training: and deploy: sections (docs/cells.md)"),
                          ("cells", "clusters: in `slidepredict run` clusters an image cohort's cells; add a cells: "
                                    "section, or run `slidepredict clusters` on tile features (docs/cells.md)")):
        bad = {k: v for k, v in config.items() if k not in (drop, "screen" if drop == "cells" else "")}
        bad.update(output_dir=str(tmp_path / "bad"), cohort={"slides_dir": str(tmp_path)})
        (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
        with pytest.raises(SlidePredictError) as e:
            run_workflow(load_config(tmp_path / "bad.yaml"))
        assert str(e.value) == message
        assert not (tmp_path / "bad").exists()


def test_one_job_per_plate_makes_the_same_cohort(field, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`--plate` embeds one plate; jobs of both plates write the bags and intensity range a whole run writes."""
    from typer.testing import CliRunner

    from slidepredict.cli import app

    table = pd.read_csv(field.table)
    table.assign(PLATE=["P1"] * 4 + ["P2"] * 4).to_csv(tmp_path / "two.csv", index=False)
    args = ["cells", "--images", str(field.root / "images"), "--image-table", str(tmp_path / "two.csv"),
            "--encoder", "stain-texture", "--unit", "tiles", "--unit-size", "128"]

    def run(*extra: str) -> str:
        res = CliRunner().invoke(app, [*args, *extra])
        assert res.exit_code == 0, res.output
        return " ".join(res.output.split())

    assert "4 done, 0 already complete" in run("--plate", "P1", "--out", str(tmp_path / "jobs"))
    assert len(list((tmp_path / "jobs" / "features").glob("*.h5"))) == 4
    first = {n: (tmp_path / "jobs" / n).read_text() for n in ("bags.csv", "normalisation.json")}
    assert "4 done, 0 already complete" in run("--plate", "P2", "--out", str(tmp_path / "jobs"))
    run("--out", str(tmp_path / "whole"))
    for name, text in first.items():
        assert text == (tmp_path / "jobs" / name).read_text() == (tmp_path / "whole" / name).read_text()
    assert sorted(p.name for p in (tmp_path / "jobs" / "features").iterdir()) == \
        sorted(p.name for p in (tmp_path / "whole" / "features").iterdir())
    bad = CliRunner().invoke(app, [*args, "--plate", "P3", "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and bad.output.strip() == "Error: plate(s) 'P3' not in PLATE of two.csv (plates: P1, P2); check --plate"
    assert not (tmp_path / "bad").exists()
    table.drop(columns="PLATE").to_csv(tmp_path / "none.csv", index=False)
    args[4] = str(tmp_path / "none.csv")
    bad = CliRunner().invoke(app, [*args, "--plate", "P1", "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and bad.output.strip() == "Error: --plate needs a PLATE column in none.csv"
    assert not (tmp_path / "bad").exists()


def test_a_screen_embedded_with_the_reference_range(field, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`--intensity-from ref/normalisation.json` embeds with the range the reference recorded; bad files refused."""
    import json

    from typer.testing import CliRunner

    from slidepredict.cli import app

    args = ["cells", "--images", str(field.root / "images"), "--image-table", str(field.table),
            "--encoder", "stain-texture", "--unit", "tiles", "--unit-size", "128"]

    def invoke(*extra: object):  # type: ignore[no-untyped-def]
        return CliRunner().invoke(app, [*args, *map(str, extra)])

    assert invoke("--intensity-range", 100, "--intensity-range", 3000, "--out", tmp_path / "ref").exit_code == 0
    res = invoke("--intensity-from", tmp_path / "ref" / "normalisation.json", "--out", tmp_path / "scr")
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "scr" / "normalisation.json").read_text())["ranges"] == [[100, 3000]]
    assert invoke("--intensity-scope", "image", "--out", tmp_path / "per-image").exit_code == 0
    cases = {
        tmp_path / "missing.json": "not found; --intensity-from takes the normalisation.json a `slidepredict cells` run wrote",
        tmp_path / "per-image" / "normalisation.json": "its cohort was normalised per image (no fixed range to reuse); "
        "embed it with --intensity-scope cohort or give --intensity-range",
        field.table: "not a normalisation.json of `slidepredict cells` (no 'ranges')",
    }
    for path, message in cases.items():
        bad = invoke("--intensity-from", path, "--out", tmp_path / "bad")
        assert bad.exit_code == 2 and " ".join(bad.output.split()) == f"Error: {path}: {message}", bad.output
        assert not (tmp_path / "bad").exists()
    both = invoke("--intensity-from", tmp_path / "ref" / "normalisation.json", "--intensity-range", 1, "--intensity-range", 2,
                  "--out", tmp_path / "bad")
    assert both.exit_code == 2 and "give intensity_range (--intensity-range) or intensity_from (--intensity-from), not both" \
        in " ".join(both.output.split())


def test_resolution_from_the_table_the_file_or_the_flag(tmp_path: Path) -> None:
    """MPP: the table's value first, then what the file records (TIFF tags), then --mpp; recorded in the h5."""
    from slidepredict.cells.extract import embed_cohort
    from slidepredict.featurefile.read import read_features
    from slidepredict.features import ExtractSettings, load_encoder
    from slidepredict.features.extraction import Runner

    rng = np.random.default_rng(0)
    img = (rng.random((64, 64)) * 2000 + 100).astype(np.uint16)
    (tmp_path / "im").mkdir()
    tifffile.imwrite(tmp_path / "im" / "tagged.tif", img, resolution=(20000, 20000), resolutionunit="CENTIMETER")
    tifffile.imwrite(tmp_path / "im" / "listed.tif", img, resolution=(20000, 20000), resolutionunit="CENTIMETER")
    tifffile.imwrite(tmp_path / "im" / "bare.tif", img)
    pd.DataFrame({"IMAGE": ["tagged.tif", "listed.tif", "bare.tif"], "MPP": ["", "0.8", ""]}).to_csv(tmp_path / "t.csv", index=False)
    runner = Runner(load_encoder("stain-texture"), ExtractSettings())
    embed_cohort(read_image_table(tmp_path / "t.csv", tmp_path / "im"), tmp_path / "out", runner,
                 UnitSettings(kind="tiles", size=32), mpp=0.3)
    got = {n: read_features(tmp_path / "out" / "features" / f"{n}.h5").attrs["mpp"] for n in ("tagged", "listed", "bare")}
    assert got == {"tagged": pytest.approx(0.5), "listed": pytest.approx(0.8), "bare": pytest.approx(0.3)}
