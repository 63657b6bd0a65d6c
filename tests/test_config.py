"""Config validation: exact one-line errors naming file, key and allowed values; template round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from slidepredict.config import load_config, reference_markdown, template_yaml, write_resolved
from slidepredict.core.errors import ConfigError


def _write(tmp_path: Path, data: dict | str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


BASE = {"output_dir": "out", "cohort": {"slides_dir": "slides"}}


def test_template_round_trips_and_resolves_relative_paths(tmp_path: Path) -> None:
    path = _write(tmp_path, template_yaml())
    cfg = load_config(path)
    assert cfg.output_dir == tmp_path / "runs/my-cohort"
    assert cfg.cohort.slides_dir == tmp_path / "slides"
    assert cfg.training is not None and cfg.training.targets == ["MSI"]
    assert cfg.deploy is None  # commented out in the template
    assert cfg.tiling.tile_um == 256.0 and cfg.extract.encoder == "resnet50-trunc"


def test_unknown_key_names_file_key_and_allowed_keys(tmp_path: Path) -> None:
    path = _write(tmp_path, {**BASE, "tiling": {"tile_mu": 256}})
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == f"{path}: unknown key 'tiling.tile_mu' (allowed here: tile_um, tile_px, min_tissue, max_background, min_sharpness, max_ink, tissue_method, qc)"


def test_unknown_section(tmp_path: Path) -> None:
    path = _write(tmp_path, {**BASE, "tilling": {}})
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == (
        f"{path}: unknown key 'tilling' (allowed here: output_dir, cohort, tiling, extract, training, deploy, "
        "stats, heatmaps, report, cells, screen, clusters, finetune)"
    )


def test_wrong_type(tmp_path: Path) -> None:
    path = _write(tmp_path, {**BASE, "tiling": {"tile_px": "big"}})
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == (
        f"{path}: 'tiling.tile_px': Input should be a valid integer, unable to parse string as an integer (got 'big')"
    )


def test_out_of_range_value(tmp_path: Path) -> None:
    path = _write(tmp_path, {**BASE, "tiling": {"min_tissue": 1.5}})
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == f"{path}: 'tiling.min_tissue': Input should be less than or equal to 1 (got 1.5)"


def test_literal_lists_allowed_values(tmp_path: Path) -> None:
    path = _write(tmp_path, {**BASE, "extract": {"precision": "int8"}})
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == f"{path}: 'extract.precision' must be one of 'auto', 'fp32', 'bf16' or 'fp16' (got 'int8')"


def test_missing_required_path(tmp_path: Path) -> None:
    path = _write(tmp_path, {"output_dir": "out", "cohort": {"clini_table": "c.csv"}})
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == f"{path}: missing required key 'cohort.slides_dir'"


def test_several_errors_are_counted(tmp_path: Path) -> None:
    path = _write(tmp_path, {"cohort": {"slides_dir": "s"}, "tiling": {"tile_px": -1}})
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == f"{path}: missing required key 'output_dir' (and 1 more)"


def test_not_a_mapping_and_bad_yaml(tmp_path: Path) -> None:
    path = _write(tmp_path, "- a\n- b\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == f"{path}: expected a mapping of sections (cohort:, tiling:, ...), got list"
    path.write_text("cohort: [unclosed\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}: line ")
    assert "not valid YAML" in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "nope.yaml")
    assert str(err.value) == f"config file not found: {tmp_path / 'nope.yaml'}"


def test_yaml_is_never_evaluated(tmp_path: Path) -> None:
    path = _write(tmp_path, "!!python/object/apply:os.system ['touch pwned']\n")
    with pytest.raises(ConfigError):
        load_config(path)
    assert not (tmp_path / "pwned").exists()


def test_write_resolved_is_loadable(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, template_yaml()))
    out = write_resolved(cfg, tmp_path / "run")
    again = load_config(out)
    assert again == cfg


def test_reference_lists_every_key() -> None:
    md = reference_markdown()
    for key in ("`tile_um`", "`encoder`", "`targets`", "`n_bootstrap`", "`topk`", "## `deploy` (optional section)"):
        assert key in md


def test_docs_config_reference_is_current() -> None:
    """docs/config.md is generated; regenerate with `python -m slidepredict.config.template > docs/config.md`."""
    docs = Path(__file__).resolve().parents[1] / "docs" / "config.md"
    assert docs.read_text() == reference_markdown()


def test_registry_names_are_checked(tmp_path: Path) -> None:
    path = _write(tmp_path, {**BASE, "training": {"targets": ["MSI"], "model": "clam"}})
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == f"{path}: 'training.model' must be one of attention, mean, tile-vote, transformer (got 'clam')"
    path = _write(tmp_path, {**BASE, "extract": {"encoder": "UNI"}})
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}: 'extract.encoder' must be one of h-optimus-0, kaiko-vits16, ")
    assert str(err.value).endswith(" (got 'UNI')")
