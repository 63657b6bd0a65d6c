"""Sub-populations: a planted rare population of cells is found as its own cluster, enriched where it was put.

Generated images (``slidepredict.demo.cells``) mark which cells belong to the rare population (large
round nuclei, ~4% of a treated well's cells, ~2% of all), so the cluster the command flags is scored
against the truth, and a wrong choice of k (the mean silhouette's) is shown to lose it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from slidepredict.cells.clusters import ClusterSettings, associate, cluster_units
from slidepredict.cli import app
from slidepredict.core.errors import CohortError
from slidepredict.demo.cells import CellImageSpec, make_cell_images
from slidepredict.featurefile.read import read_features

WELLS = tuple(f"{r}{c:02d}" for r in "ABCD" for c in range(1, 5))


@pytest.fixture(scope="module")
def plate(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """16 wells (8 treated, both classes in both groups), nuclei embedded with stain-texture features."""
    root = tmp_path_factory.mktemp("clusters")
    spec = CellImageSpec(wells=WELLS, images_per_well=2, cells=(24, 30), classes=("round", "elongated"),
                         treated=WELLS[:8], rare_share=0.04, seed=1)
    made = make_cell_images(root, spec)
    res = CliRunner().invoke(app, ["cells", "--images", str(made.root / "images"), "--image-table", str(made.table),
                                   "--encoder", "stain-texture", "--unit", "nuclei", "--unit-size", "48",
                                   "--bag", "well", "--out", str(root / "cells")])
    assert res.exit_code == 0, res.output
    return made, root / "cells"


def _truth(made, cells: Path) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    """Per detected unit: whether it sits on a planted rare nucleus (within 12 px of its centre; nuclei are >= 30 px apart)."""
    rows = []
    for r in pd.read_csv(cells / "bags.csv").drop_duplicates("FILENAME").itertuples():
        bag = read_features(cells / "features" / f"{r.FILENAME}.h5")
        centre = bag.coords + int(bag.attrs["tile_size_level0"]) / 2
        d = np.linalg.norm(centre[:, None] - made.centres[r.IMAGE][None], axis=2)
        rare = made.rare[r.IMAGE][d.argmin(1)] & (d.min(1) < 12)
        rows.append(pd.DataFrame({"FILENAME": r.FILENAME, "unit": np.arange(len(rare)), "rare": rare}))
    return pd.concat(rows, ignore_index=True)


def test_rare_population_found_as_its_own_enriched_cluster(plate, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    made, cells = plate
    out = tmp_path / "k"
    res = CliRunner().invoke(app, ["clusters", "--features", str(cells / "features"), "--bags", str(cells / "bags.csv"),
                                   "--images", str(made.root / "images"), "--sample", "WELL", "--out", str(out)])
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out / "clusters.csv")
    flagged = table[table.rare_enriched]
    assert len(flagged) == 1, table
    c = int(flagged.cluster.iloc[0])
    assert flagged.enriched_in.iloc[0] == "treated" and flagged.fdr.iloc[0] < 0.05
    assert flagged.share_of_units.iloc[0] == pytest.approx(0.02, abs=0.01)
    assert (table[table.cluster != c].fdr > 0.05).all()  # the common shapes are spread alike over both groups
    units = pd.read_csv(out / "units.csv.gz").merge(_truth(made, cells), on=["FILENAME", "unit"])
    member = units.cluster == c
    assert units.rare[member].mean() >= 0.85 and member[units.rare].mean() >= 0.9  # purity (17/19) and recall
    assert f"cluster {c} (" in res.output and "enriched in treated" in res.output
    fractions = pd.read_csv(out / "fractions.csv", index_col=0)
    assert sorted(fractions.index) == sorted(f"P1:{w}" for w in WELLS) and np.allclose(fractions.sum(1), 1.0)
    with Image.open(out / "montage.png") as im:  # one row of example cells per cluster
        assert im.size[1] == 64 * len(table)
    assert not list(out.glob(".clusters-*"))
    from slidepredict.report import build_report

    html = build_report(out).read_text()  # the report's section: the table, how k was chosen, the montage
    assert '<section id="clusters">' in html and "k = 4 chosen by davies-bouldin over" in html and "16 samples (PLATE:WELL)." in html
    assert 'href="montage.png"' in html and "rare_enriched" in html


def test_silhouette_merges_the_rare_population_away(plate) -> None:  # type: ignore[no-untyped-def]
    made, cells = plate
    bags = pd.read_csv(cells / "bags.csv")
    units, fractions, info = cluster_units(bags, cells / "features", ClusterSettings(sample="WELL", k_by="silhouette"))
    table = associate(fractions, bags, ClusterSettings(sample="WELL"), units)
    assert info["k"] == 2 and not table.rare_enriched.any()


def test_clusters_input_errors(plate, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    made, cells = plate
    bags = pd.read_csv(cells / "bags.csv")

    def fails(table: pd.DataFrame, *flags: str) -> str:
        table.to_csv(tmp_path / "bags.csv", index=False)
        res = CliRunner().invoke(app, ["clusters", "--features", str(cells / "features"), "--bags",
                                       str(tmp_path / "bags.csv"), "--images", str(made.root / "images"),
                                       "--k", "3", *flags, "--out", str(tmp_path / "k")])
        assert res.exit_code == 2 and not (tmp_path / "k").exists()
        return " ".join(res.output.split())

    assert "'CONTROL' must split the samples into two groups to compare; it has 1 value(s): DMSO" in fails(
        bags.assign(CONTROL="DMSO"), "--sample", "WELL")
    assert "no group column 'ARM' in the bags table; columns: " in fails(bags, "--sample", "WELL", "--group", "ARM")
    assert "no column 'PLATE_ROW' in the bags table to define samples" in fails(bags, "--sample", "PLATE_ROW")
    assert "each group of 'CONTROL' needs at least 3 samples (DMSO: 8, treated: 2)" in fails(
        bags[~bags.WELL.isin(WELLS[2:8])], "--sample", "WELL")
    missing = bags.assign(FILENAME=bags.FILENAME.where(bags.index > 0, "gone"))
    assert "1 image(s) of the bags table have no feature file in " in fails(missing, "--sample", "WELL")
    with pytest.raises(CohortError):
        associate(pd.DataFrame({0: [1.0]}, index=["A01"]), bags, ClusterSettings(sample="WELL"),
                  pd.DataFrame({"cluster": [0]}))


def _two_plates(root: Path, images_per_well: int = 2) -> pd.DataFrame:
    """Two plates of 16 wells with opposite layouts (P1 treats the first 8 wells, P2 the last 8); 5% of a treated
    well's units carry their own phenotype (a shifted feature vector), no untreated well has any."""
    from slidepredict.featurefile import write_h5_atomic

    rng = np.random.default_rng(0)
    rows = []
    for plate, treated in (("P1", WELLS[:8]), ("P2", WELLS[8:])):
        for well in WELLS:
            for i in range(images_per_well):
                name = f"{plate}__{well}_s{i + 1}"
                x = rng.normal(size=(100, 8)).astype(np.float32)
                rare = (np.arange(100) < 5) & (well in treated)
                x[rare] += 6.0
                coords = np.stack([np.arange(100) * 10, np.zeros(100)], 1).astype(np.int64)
                write_h5_atomic(root / "features" / f"{name}.h5", {"features": x, "coords": coords},
                                {"encoder": "fake", "encoder_hash": "h", "tile_size_px": 32, "tile_size_level0": 32})
                rows.append({"IMAGE": f"{name}.tif", "PLATE": plate, "WELL": well, "BAG": f"{name}.tif",
                             "FILENAME": name, "CONTROL": "treated" if well in treated else "DMSO"})
    return pd.DataFrame(rows)


def test_a_well_is_a_plate_and_a_well(tmp_path: Path) -> None:
    """Same-named wells of two plates merged into one sample hid the population (p = 1.0); plate:well finds it.
    And with several images per well the default sample is the well: images of one well are not independent."""
    bags = _two_plates(tmp_path)
    for sample in ("WELL", None):
        s = ClusterSettings(sample=sample, k=2)
        units, fractions, info = cluster_units(bags, tmp_path / "features", s)
        assert info["sample"] == "PLATE:WELL" and len(fractions) == 32  # 64 images, 32 wells
        table = associate(fractions, bags, s, units)
        rare = table[table.rare_enriched]
        assert len(rare) == 1 and rare.enriched_in.iloc[0] == "treated" and rare.fdr.iloc[0] < 1e-3, table
    with pytest.raises(CohortError, match="sample 'A01' .COMPOUND. has more than one value of 'CONTROL'"):
        mixed = bags.assign(COMPOUND=bags.WELL)  # a column naming wells without their plate
        associate(fractions, mixed, ClusterSettings(sample="COMPOUND", k=2), units)
