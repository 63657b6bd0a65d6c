"""Extraction end to end: the h5 contract, skip/redo, bad input, interop readers, kills and concurrency."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from slidepredict import featurefile
from slidepredict.core import batch
from slidepredict.cli import app
from slidepredict.core.errors import ConfigError, SlideError
from slidepredict.demo.synthetic import make_slide
from slidepredict.featurefile import load_coords, slide_h5_path
from slidepredict.features import ExtractSettings, extract, load_encoder
from slidepredict.features.extraction import Runner, batch_ranges
from slidepredict.slide import open_slide
from slidepredict.tiling import TilingSettings

FAST = ExtractSettings(encoder="stain-texture", batch_size=4, workers=1)


def fast(encoder: str = "stain-texture", **kw) -> ExtractSettings:
    """FAST with another encoder or setting (validated like a config file's section)."""
    return ExtractSettings(**{**FAST.model_dump(), "encoder": encoder, **kw})
CONTRACT_ATTRS = {
    "encoder", "encoder_hash", "tile_size_um", "tile_size_px", "tile_size_level0", "mpp",
    "slide_width", "slide_height", "slidepredict_version", "stain_norm",
}


@pytest.fixture(scope="module")
def resnet_run(tmp_path_factory, cmu_slide) -> Path:
    out = tmp_path_factory.mktemp("features")
    result = extract([cmu_slide], out, fast("resnet50-trunc", weights="random"))
    assert result.done == [cmu_slide] and result.exit_code == 0
    return out


@pytest.fixture(scope="module")
def signal_slide(tmp_path_factory):
    return make_slide(tmp_path_factory.mktemp("syn") / "signal.tiff", seed=7, width=2048, height=1536, signal=True,
                      signal_fraction=0.2)


def _leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith((featurefile.TMP_SUFFIX, featurefile.LOCK_SUFFIX))]


def test_feature_file_contract(resnet_run, cmu_slide):
    path = slide_h5_path(resnet_run, cmu_slide)
    coords, _ = load_coords(slide_h5_path(resnet_run / "coords", cmu_slide))
    with h5py.File(path) as f:
        assert f["features"].dtype == np.float32 and f["features"].shape == (len(coords), 1024)
        assert f["coords"].dtype == np.int64
        np.testing.assert_array_equal(f["coords"][()], coords)
        attrs = dict(f.attrs)
    assert CONTRACT_ATTRS <= set(attrs)
    assert attrs["encoder"] == "resnet50-trunc" and attrs["encoder_hash"].endswith("-random-0")
    assert (attrs["tile_size_um"], attrs["tile_size_px"], attrs["tile_size_level0"]) == (256.0, 224, 513)
    assert (attrs["mpp"], attrs["slide_width"], attrs["slide_height"]) == (0.499, 2220, 2967)
    assert attrs["stain_norm"] == "none"
    bag = featurefile.read_features(path)
    assert bag.layout == "slidepredict" and np.isfinite(bag.features).all()
    assert not _leftovers(resnet_run)


def test_features_match_the_tiles_read_directly(resnet_run, cmu_slide):
    """Worker decoding + batching change nothing: row i is the encoder applied to tile i."""
    bag = featurefile.read_features(slide_h5_path(resnet_run, cmu_slide))
    runner = Runner(load_encoder("resnet50-trunc", weights="random"), FAST)
    with open_slide(cmu_slide) as slide:
        tiles = np.stack([slide.read_region_at(x, y, 256.0, 224) for x, y in bag.coords[[0, -1]]])
    direct = runner.forward(torch.from_numpy(tiles)).numpy()
    np.testing.assert_allclose(bag.features[[0, -1]], direct, rtol=0.05, atol=0.05)


@pytest.mark.parametrize(("n", "size", "lengths"), [(1, 32, [1]), (46, 32, [8, 32, 6]), (9, 4, [1, 4, 4])])
def test_batches_cover_every_tile_once_with_a_short_first_one(n, size, lengths):
    ranges = batch_ranges(n, size)
    assert [len(r) for r in ranges] == lengths
    assert [i for r in ranges for i in r] == list(range(n))


def test_rerun_skips_and_changed_settings_redo(tmp_path, cmu_slide):
    run = lambda **kw: extract([cmu_slide], tmp_path, fast(**kw))  # noqa: E731
    assert run().done == [cmu_slide]
    target = slide_h5_path(tmp_path, cmu_slide)
    first = target.stat().st_mtime_ns
    assert run().skipped == [cmu_slide] and target.stat().st_mtime_ns == first
    assert run(stain_norm="macenko").done == [cmu_slide]
    assert featurefile.read_attrs(target)["stain_norm"] == "macenko"
    with h5py.File(target, "w") as f:  # an incomplete file (no completion flag) is redone, not trusted
        f.create_dataset("features", data=np.zeros((1, 52)))
    assert run().done == [cmu_slide]
    assert featurefile.read_features(target).features.shape[1] == 52


def test_float16_features(tmp_path, cmu_slide):
    extract([cmu_slide], tmp_path, fast(dtype="float16", workers=0))
    with h5py.File(slide_h5_path(tmp_path, cmu_slide)) as f:
        assert f["features"].dtype == np.float16


def test_stain_texture_finds_the_planted_signal(tmp_path, signal_slide):
    tiling = TilingSettings(tile_um=128.0, tile_px=112)
    extract([signal_slide.path], tmp_path, FAST, tiling=tiling)
    bag = featurefile.read_features(slide_h5_path(tmp_path, signal_slide.path))
    inside = signal_slide.in_signal(bag.coords, bag.attrs["tile_size_level0"])
    assert 2 <= inside.sum() < len(inside) - 2
    from slidepredict.features.stain_texture import FEATURE_NAMES

    size = bag.features[:, FEATURE_NAMES.index("nuclei0.04_size")].astype(float)
    assert size[inside].min() > np.median(size[~inside])  # larger nuclei, the planted morphology


def test_shards_split_a_folder_without_overlap(tmp_path, cmu_slide, signal_slide):
    folder = tmp_path / "slides"
    folder.mkdir()
    for src in (cmu_slide, signal_slide.path):
        (folder / src.name).symlink_to(src)
    one = extract([folder], tmp_path / "f", FAST, shard="1/2")
    two = extract([folder], tmp_path / "f", FAST, shard="2/2")
    assert len(one.done) == len(two.done) == 1 and set(one.done).isdisjoint(two.done)
    with pytest.raises(Exception, match=r"^--shard 3/3 selects no slide: there are only 2$"):
        extract([folder], tmp_path / "f", FAST, shard="3/3")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"precision": "fp16", "device": "cpu"}, "--precision fp16 needs a CUDA device; on CPUs use bf16 or fp32"),
        ({"encoder": "resnet51"}, "unknown encoder 'resnet51'; choose one of: "),
    ],
)
def test_bad_settings_fail_before_any_output(tmp_path, cmu_slide, kwargs, message):
    """Settings that pass validation but cannot run here (values out of range are refused by the settings model)."""
    with pytest.raises(ConfigError) as err:
        extract([cmu_slide], tmp_path / "out", FAST.model_copy(update=kwargs))
    assert str(err.value).startswith(message)
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cuda_requested_without_gpu(tmp_path, cmu_slide):
    with pytest.raises(ConfigError, match=r"^--device cuda: no CUDA GPU is visible to torch; use --device cpu or auto$"):
        extract([cmu_slide], tmp_path, fast(device="cuda"))


def test_wrong_tile_size_for_a_fixed_size_vit(tmp_path, cmu_slide):
    with pytest.raises(ConfigError, match=r"^encoder 'lunit-vits16' cannot take 256x256 tiles \(use --tile-px 224\): "):
        extract([cmu_slide], tmp_path / "out", fast("lunit-vits16", weights="random"), tiling=TilingSettings(tile_px=256))
    assert not (tmp_path / "out").exists()


def test_unreadable_slide_fails_alone(tmp_path, cmu_slide):
    folder = tmp_path / "slides"
    folder.mkdir()
    (folder / "broken.svs").write_bytes(b"not a slide at all")
    (folder / cmu_slide.name).symlink_to(cmu_slide)
    result = extract([folder], tmp_path / "out", FAST)
    assert result.done == [folder / cmu_slide.name] and result.exit_code == 1
    [(slide, reason)] = result.failed
    assert slide.name == "broken.svs" and reason.startswith(f"cannot open slide {folder / 'broken.svs'}: not a supported slide")
    assert not slide_h5_path(tmp_path / "out", slide).exists() and not _leftovers(tmp_path / "out")


@pytest.mark.parametrize("workers", [0, 1])
def test_read_failure_in_a_worker_is_one_line(tmp_path, cmu_slide, monkeypatch, workers):
    """A tile that cannot be decoded (corrupt JPEG tile, network drop) fails the slide in one line, no file."""
    from slidepredict.slide import Slide

    def broken(*_args, **_kw):
        raise SlideError("cannot read pixels (corrupt or truncated file?): boom")

    monkeypatch.setattr(Slide, "read_region_at", broken)  # forked workers inherit the patch
    result = extract([cmu_slide], tmp_path, fast(workers=workers))
    assert result.failed == [(cmu_slide, "cannot read pixels (corrupt or truncated file?): boom")]
    assert not slide_h5_path(tmp_path, cmu_slide).exists() and not _leftovers(tmp_path)


def test_no_slides(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SlideError, match=r"^no slides found in .*empty \(looked for "):
        extract([tmp_path / "empty"], tmp_path / "out", FAST)


def test_cli_extract_and_missing_weights(tmp_path, cmu_slide, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cli = CliRunner()
    ok = cli.invoke(app, ["extract", str(cmu_slide), "--out", str(tmp_path / "f"), "--encoder", "stain-texture", "--batch-size", "4"])
    assert ok.exit_code == 0, ok.output
    assert f"Features in {tmp_path / 'f'}: 1 done, 0 already complete, 0 failed" in ok.output
    missing = cli.invoke(app, ["extract", str(cmu_slide), "--out", str(tmp_path / "g"), "--encoder", "uni"])
    assert missing.exit_code == 2
    assert re.search(r"Error: no weights for encoder 'uni': no --weights given and MahmoodLab/uni@main", missing.output)
    assert not (tmp_path / "g").exists()


# Interop: files written by other tools behind the same reader.


def test_reads_stamp_files(data_dir):
    bag = featurefile.read_features(data_dir / "features" / "TCGA-AD-6964-01Z-00-DX1" / "features.h5")
    assert bag.layout == "stamp" and bag.features.shape == (777, 512) and bag.features.dtype == np.float32
    assert bag.coords.shape == (777, 2) and bag.coords.dtype == np.int64
    assert bag.attrs == {}  # the real files carry no attributes


def test_reads_marugoto_files_without_coords(data_dir):
    bag = featurefile.read_features(data_dir / "features" / "TCGA-3X-AAVA-01Z-00-DX1" / "features.h5")
    assert bag.layout == "clam" and bag.features.shape == (180, 512)
    assert bag.coords is None  # tile names like 0_0_0_506.jpg carry no level-0 position
    assert featurefile.probe_feature_file(data_dir / "features" / "TCGA-3X-AAVA-01Z-00-DX1" / "features.h5").spec.dim == 512


def test_reads_clam_files(tmp_path):
    path = tmp_path / "clam.h5"
    with h5py.File(path, "w") as f:
        f["features"] = np.ones((1, 5, 1024), np.float32)
        f["coords"] = np.arange(10).reshape(1, 5, 2)
    bag = featurefile.read_features(path)
    assert bag.layout == "clam" and bag.features.shape == (5, 1024) and bag.coords.shape == (5, 2)


# Processes: a killed run and two runs sharing one folder (real subprocesses).

_EXTRACT = (
    "import sys; from slidepredict.features import extract, ExtractSettings; from slidepredict.tiling import TilingSettings; "
    "r = extract(sys.argv[1:2], sys.argv[2], ExtractSettings(encoder=sys.argv[3], batch_size=4, workers=1, "
    "weights=sys.argv[4] if sys.argv[4] != '-' else None), tiling=TilingSettings(tile_um=float(sys.argv[5]), tile_px=112)); "
    "print('RESULT', len(r.done), len(r.skipped), len(r.busy), len(r.failed))"
)


def _spawn(slides: Path, out: Path, encoder: str, weights: str = "-", tile_um: float = 128.0) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", _EXTRACT, str(slides), str(out), encoder, weights, str(tile_um)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )


@pytest.fixture(scope="module")
def slide_folder(tmp_path_factory, cmu_slide) -> Path:
    folder = tmp_path_factory.mktemp("slides")
    (folder / cmu_slide.name).symlink_to(cmu_slide)
    for seed in (1, 2):
        make_slide(folder / f"syn{seed}.tiff", seed=seed, width=2048, height=1536)
    return folder


@pytest.mark.slow
def test_killed_run_leaves_nothing_that_looks_complete(tmp_path, cmu_slide):
    out = tmp_path / "out"
    proc = _spawn(cmu_slide, out, "resnet50-trunc", "random", tile_um=64.0)  # ~150 tiles: time to kill it
    deadline = time.time() + 120
    while not list(out.glob(f"*{featurefile.LOCK_SUFFIX}")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.1)  # the model is now running over the tiles
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    target = slide_h5_path(out, cmu_slide)
    assert not target.exists() or featurefile.read_attrs(target) is None  # nothing that reads as complete
    (out / f"{target.name}.{999_999_999}{featurefile.TMP_SUFFIX}").write_bytes(b"partial")  # another dead job's leftover
    tiling = TilingSettings(tile_um=64.0, tile_px=112)
    result = extract([cmu_slide], out, fast("resnet50-trunc", weights="random"), tiling=tiling)
    assert result.done == [cmu_slide]  # the dead process's lock was taken over, not waited on
    assert not _leftovers(out)
    assert featurefile.read_features(target).features.shape[1] == 1024


@pytest.mark.slow
def test_two_processes_share_one_folder(tmp_path, slide_folder):
    out = tmp_path / "out"
    procs = [_spawn(slide_folder, out, "stain-texture") for _ in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    counts = [list(map(int, re.search(r"RESULT (\d+) (\d+) (\d+) (\d+)", o).groups())) for o in outputs]
    assert sum(c[0] for c in counts) == 3, outputs  # every slide extracted exactly once
    assert all(c[3] == 0 for c in counts)
    for slide in slide_folder.iterdir():
        assert featurefile.read_attrs(slide_h5_path(out, slide))["encoder"] == "stain-texture"
    assert not _leftovers(out)
    again = extract([slide_folder], out, FAST, tiling=TilingSettings(tile_um=128.0, tile_px=112))
    assert len(again.skipped) == 3 and batch.SKIPPED == "skipped"
