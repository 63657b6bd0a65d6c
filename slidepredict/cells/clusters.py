"""Sub-populations: cluster unit (cell or tile) embeddings, and test which clusters a group is enriched in.

k-means (scikit-learn) is fitted on standardised features of up to 50,000 units drawn evenly from
every file (so a 2% population keeps its 2%), then every unit of every file is assigned, one file at
a time, so a plate never has to fit in memory; k is given, or chosen by the Davies-Bouldin index
(each cluster weighs the same in it, so a small distinct population can win k; the mean silhouette,
the other choice, weighs units, and on generated cells picked k=2 and merged a 2% population away). (A
mini-batch k-means refined file by file was tried first: its reassignment of small clusters and its
drift on one-well batches dissolved a planted 2% population.) Per sample (by default the well, plate
and well together; or a bag, compound: any column of ``bags.csv``) each cluster's share of the sample's units is computed,
and each cluster's shares are compared between the two values of a group column (treated vs
control) with a two-sided Mann-Whitney U test over samples, the samples being the independent
units, not the cells; p-values are corrected over clusters by Benjamini-Hochberg. A cluster with
under ``rare`` (5%) of all units and an FDR under ``alpha`` is flagged as a rare enriched population.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from slidepredict.cells.settings import ClusterSettings
from slidepredict.cells.table import BAG, PLATE, WELL
from slidepredict.core.errors import CohortError
from slidepredict.core.progress import track

log = logging.getLogger(__name__)
SAMPLE_UNITS = 50_000  # units the clusters are fitted on, drawn evenly from every file
K_CHOICE_UNITS = 5_000  # of which the choice of k looks at this many


def _files(bags: Any, features: Path) -> list[tuple[str, Path]]:
    rows = bags.drop_duplicates("FILENAME")
    missing = [f for f in rows["FILENAME"] if not (features / f"{f}.h5").is_file()]
    if missing:
        raise CohortError(f"{len(missing)} image(s) of the bags table have no feature file in {features}, e.g. "
                          f"'{missing[0]}.h5'; run `slidepredict cells` first")
    return [(str(f), features / f"{f}.h5") for f in rows["FILENAME"]]


def _read(path: Path) -> np.ndarray:
    from slidepredict.featurefile import read_features

    return np.asarray(read_features(path).features, dtype=np.float32)


def _scaler(files: list[tuple[str, Path]]) -> tuple[np.ndarray, np.ndarray, int]:
    """Per-feature mean and SD over all units (and their number), one file at a time."""
    n, s, ss = 0, 0.0, 0.0
    for _, path in track(files, "Feature statistics"):
        x = _read(path).astype(np.float64)
        n, s, ss = n + len(x), s + x.sum(0), ss + (x**2).sum(0)
    if n == 0:
        raise CohortError("no units in any feature file; nothing to cluster")
    mean = s / n
    sd = np.sqrt(np.maximum(ss / n - mean**2, 0.0))
    return mean, np.where(sd > 1e-8, sd, 1.0), n


def _davies_bouldin(sample: np.ndarray, labels: np.ndarray, seed: int) -> float:
    """Negated Davies-Bouldin index: every cluster weighs the same, so a small distinct one counts."""
    from sklearn.metrics import davies_bouldin_score

    return -float(davies_bouldin_score(sample, labels))


def _silhouette(sample: np.ndarray, labels: np.ndarray, seed: int) -> float:
    """Mean silhouette over units: large clusters dominate it, a 2% population barely moves it."""
    from sklearn.metrics import silhouette_score

    return float(silhouette_score(sample, labels, sample_size=min(len(sample), 3000), random_state=seed))


# how an automatic k is scored (higher is better)
K_CRITERIA = {"davies-bouldin": _davies_bouldin, "silhouette": _silhouette}


def choose_k(sample: np.ndarray, k_range: tuple[int, int], seed: int,
             criterion: str = "davies-bouldin") -> tuple[int, dict[int, float]]:
    """The k in ``k_range`` that scores best on ``sample`` (standardised units) by ``criterion``."""
    from sklearn.cluster import KMeans

    score = K_CRITERIA[criterion]
    scores = {}
    for k in range(k_range[0], min(k_range[1], len(sample) - 1) + 1):
        labels = KMeans(k, n_init=4, random_state=seed).fit_predict(sample)
        scores[k] = score(sample, labels, seed)
    return max(scores, key=lambda k: scores[k]), scores


def cluster_units(bags: Any, features: Path, s: ClusterSettings) -> tuple[Any, Any, dict[str, Any]]:
    """(per-unit table FILENAME, unit, cluster; per-sample cluster fractions; a summary with k and how it was chosen)."""
    import pandas as pd
    from sklearn.cluster import KMeans

    files = _files(bags, features)
    mean, sd, total = _scaler(files)
    rng = np.random.default_rng(s.seed)
    keep = min(1.0, SAMPLE_UNITS / total)  # the same share of every file: a rare population keeps its share
    picks = [((x := _read(p)) - mean)[rng.random(len(x)) < keep] / sd for _, p in files]
    sample = np.concatenate(picks)
    k, scores = (s.k, {}) if s.k else choose_k(sample[rng.permutation(len(sample))[:K_CHOICE_UNITS]],
                                                    (s.k_min, s.k_max), s.seed, s.k_by)
    model = KMeans(k, n_init=4, random_state=s.seed).fit(sample)
    units = []
    for name, path in files:
        x = _read(path)
        labels = model.predict((x - mean) / sd) if len(x) else np.zeros(0, int)
        units.append(pd.DataFrame({"FILENAME": name, "unit": np.arange(len(labels)), "cluster": labels}))
    unit_table = pd.concat(units, ignore_index=True)
    name, keys = samples(bags, s)
    per_file = keys.groupby(bags["FILENAME"].astype(str)).first()
    unit_table[name] = per_file.loc[unit_table["FILENAME"].astype(str)].to_numpy()
    counts = pd.crosstab(unit_table[name], unit_table["cluster"]).reindex(columns=range(k), fill_value=0)
    fractions = counts.div(counts.sum(1), axis=0)
    return unit_table, fractions, {"k": k, "scores": scores, "counts": counts, "sample": name}


def samples(bags: Any, s: ClusterSettings) -> tuple[str, Any]:
    """The independent sample of each row of ``bags.csv``, and what it is called.

    A well is a plate and a well: same-named wells of two plates are two samples (merged, two plates of
    opposite layouts hid a planted population, p = 1.0). By default the sample is the well when the table
    has one, as the images of one well are not independent; else the bag.
    """
    column = s.sample or (WELL if WELL in bags.columns else BAG)
    if column not in bags.columns:
        raise CohortError(f"no column '{column}' in the bags table to define samples; columns: {', '.join(bags.columns)}")
    values = bags[column].astype(str)
    if column == WELL and PLATE in bags.columns:
        return f"{PLATE}:{WELL}", bags[PLATE].astype(str) + ":" + values
    return column, values


def associate(fractions: Any, bags: Any, s: ClusterSettings, units: Any) -> Any:
    """Per cluster: share of all units, mean share per group, Mann-Whitney p, BH FDR, and the rare-enriched flag."""
    import pandas as pd
    from scipy.stats import false_discovery_control, mannwhitneyu

    if s.group not in bags.columns:
        raise CohortError(f"no group column '{s.group}' in the bags table; columns: {', '.join(bags.columns)}")
    name, keys = samples(bags, s)
    per_sample = bags[s.group].astype(str).groupby(keys)
    mixed = per_sample.nunique()
    if (mixed > 1).any():
        raise CohortError(f"sample '{mixed[mixed > 1].index[0]}' ({name}) has more than one value of '{s.group}'; "
                          "choose a sample column (--sample) whose samples each sit in one group")
    group = bags[s.group].groupby(keys).first().reindex(fractions.index)
    values = sorted(group.dropna().astype(str).unique())
    if len(values) != 2:
        raise CohortError(f"'{s.group}' must split the samples into two groups to compare; it has "
                          f"{len(values)} value(s): {', '.join(values)}")
    a, b = (fractions[group.astype(str) == v] for v in values)
    if min(len(a), len(b)) < 3:
        raise CohortError(f"each group of '{s.group}' needs at least 3 samples ({values[0]}: {len(a)}, {values[1]}: {len(b)})")
    share = units["cluster"].value_counts(normalize=True).reindex(fractions.columns, fill_value=0.0)
    rows = []
    for c in fractions.columns:
        p = float(mannwhitneyu(a[c], b[c], alternative="two-sided").pvalue)
        rows.append({"cluster": int(c), "share_of_units": float(share[c]), f"mean_share_{values[0]}": float(a[c].mean()),
                     f"mean_share_{values[1]}": float(b[c].mean()), "p": p})
    table = pd.DataFrame(rows)
    table["fdr"] = false_discovery_control(table["p"].to_numpy(), method="bh")
    high = np.where(table[f"mean_share_{values[1]}"] > table[f"mean_share_{values[0]}"], values[1], values[0])
    table["enriched_in"] = np.where(table["fdr"] < s.alpha, high, "")
    table["rare_enriched"] = (table["share_of_units"] < s.rare) & (table["fdr"] < s.alpha)
    return table


def montage(units: Any, bags: Any, images: Path, features: Path, path: Path, per_cluster: int = 8, seed: int = 0) -> Path:
    """Up to ``per_cluster`` example units of every cluster, one row per cluster, cut from the images."""
    from PIL import Image, ImageDraw

    from slidepredict.cells.images import load_rgb
    from slidepredict.cells.units import crop
    from slidepredict.featurefile import read_features

    side = 64
    rng = np.random.default_rng(seed)
    clusters = sorted(units["cluster"].unique())
    sheet = Image.new("RGB", (side * (per_cluster + 1), side * len(clusters)), "white")
    draw = ImageDraw.Draw(sheet)
    image_of = bags.drop_duplicates("FILENAME").set_index("FILENAME")["IMAGE"]
    cache: dict[str, tuple[np.ndarray, np.ndarray, int]] = {}
    for row, c in enumerate(clusters):
        members = units[units["cluster"] == c]
        chosen = members.iloc[rng.permutation(len(members))[:per_cluster]]
        draw.text((4, row * side + side // 2 - 6), f"{c}: {len(members)}", fill="black")
        for col, unit in enumerate(chosen.itertuples()):
            if unit.FILENAME not in cache:
                bag = read_features(features / f"{unit.FILENAME}.h5")
                size = int(bag.attrs.get("tile_size_level0", side))
                cache[unit.FILENAME] = (load_rgb(images / str(image_of[unit.FILENAME])), bag.coords, size)
            rgb, coords, size = cache[unit.FILENAME]
            box = np.array([*coords[unit.unit], size])
            sheet.paste(Image.fromarray(crop(rgb, box, side)), ((col + 1) * side, row * side))
    sheet.save(path)
    return path


def run_clusters(features: Path, bags_path: Path, images: Path, out: Path, s: ClusterSettings) -> dict[str, Any]:
    """clusters.csv (association), fractions.csv (per sample), units.csv.gz, montage.png, published together."""
    import json

    from slidepredict.cohort.tables import read_table, require_columns
    from slidepredict.core.atomic import staged_folder

    bags = read_table(bags_path)
    require_columns(bags, ["FILENAME", "IMAGE"], Path(bags_path), "bags table")
    units, fractions, info = cluster_units(bags, Path(features), s)
    table = associate(fractions, bags, s, units)
    with staged_folder(out, ".clusters-") as staging:
        table.to_csv(staging / "clusters.csv", index=False, float_format="%.6g")
        fractions.to_csv(staging / "fractions.csv", float_format="%.6g")
        units.to_csv(staging / "units.csv.gz", index=False)
        montage(units, bags, Path(images), Path(features), staging / "montage.png", seed=s.seed)
        summary = {"k": info["k"], "chosen_by": s.k_by if info["scores"] else "given",
                   "scores": info["scores"], "units": len(units), "samples": len(fractions), "sample": info["sample"]}
        (staging / "clusters.json").write_text(json.dumps(summary, indent=2))
        for name in ("clusters.csv", "fractions.csv", "units.csv.gz", "montage.png", "clusters.json"):
            (staging / name).replace(Path(out) / name)
    rare = table[table["rare_enriched"]]
    return {"k": info["k"], "units": len(units), "rare": [(int(r.cluster), float(r.share_of_units), str(r.enriched_in),
                                                          float(r.fdr)) for r in rare.itertuples()]}
