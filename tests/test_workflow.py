"""init / --config / run: one config file drives every command, flags override it."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import pytest
import yaml
from typer.testing import CliRunner

from slidepredict.cli import app
from slidepredict.config import load_config, template_yaml
from slidepredict.core.errors import SlidePredictError
from slidepredict.pipeline.run import STAGES, run_workflow

runner = CliRunner()


def test_init_writes_template_and_refuses_to_overwrite(tmp_path: Path) -> None:
    res = runner.invoke(app, ["init", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "config.yaml").read_text() == template_yaml()
    (tmp_path / "config.yaml").write_text("# my edits\n")
    res = runner.invoke(app, ["init", str(tmp_path)])
    assert res.exit_code == 2
    assert f"Error: {tmp_path / 'config.yaml'} already exists; edit it, or pass --force to overwrite it" in res.output
    assert (tmp_path / "config.yaml").read_text() == "# my edits\n"


def _config(tmp_path: Path, slide: Path, **sections: dict) -> Path:
    (tmp_path / "slides").mkdir()
    shutil.copy(slide, tmp_path / "slides" / slide.name)
    data = {"output_dir": "run", "cohort": {"slides_dir": "slides"}, **sections}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_tile_takes_config_values_and_flags_override_them(tmp_path: Path, cmu_slide: Path) -> None:
    cfg = _config(tmp_path, cmu_slide, tiling={"tile_um": 400, "tile_px": 64, "qc": False})
    res = runner.invoke(app, ["tile", "--config", str(cfg), "--tile-px", "32"])
    assert res.exit_code == 0, res.output
    out = tmp_path / "run" / "tiles" / "CMU-1-Small-Region.h5"
    with h5py.File(out) as f:
        assert f.attrs["tile_size_um"] == 400  # from the config
        assert f.attrs["tile_size_px"] == 32  # the flag wins
    assert not (tmp_path / "run" / "tiles" / "qc").exists()  # qc: false


def test_config_error_from_a_command_is_one_line(tmp_path: Path, cmu_slide: Path) -> None:
    cfg = _config(tmp_path, cmu_slide, tiling={"tile_size": 3})
    res = runner.invoke(app, ["tile", "--config", str(cfg)])
    assert res.exit_code == 2
    assert res.output.strip() == (
        f"Error: {cfg}: unknown key 'tiling.tile_size' (allowed here: tile_um, tile_px, min_tissue, max_background, min_sharpness, max_ink, tissue_method, qc)"
    )
    assert not (tmp_path / "run").exists()


def test_run_rejects_unknown_stage(tmp_path: Path, cmu_slide: Path) -> None:
    cfg = load_config(_config(tmp_path, cmu_slide))
    with pytest.raises(SlidePredictError) as err:
        run_workflow(cfg, only=["tiling"])
    assert str(err.value) == f"unknown stage(s) tiling; stages are: {', '.join(STAGES)}"
    assert not (tmp_path / "run").exists()


def test_run_tiles_records_config_and_log_and_skips_on_rerun(tmp_path: Path, cmu_slide: Path) -> None:
    cfg = load_config(_config(tmp_path, cmu_slide, tiling={"tile_um": 400, "tile_px": 32}))
    ctx = run_workflow(cfg, only=["tile"])
    assert ctx.results["tile"] == "1 done, 0 already complete, 0 failed"
    assert load_config(tmp_path / "run" / "config.resolved.yaml") == cfg
    assert "stage tile" in (tmp_path / "run" / "run.log").read_text()
    again = run_workflow(cfg, only=["tile"])
    assert again.results["tile"] == "0 done, 1 already complete, 0 failed"
