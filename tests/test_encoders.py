"""The encoder registry: every registered encoder is checked the moment it is added.

Real weights cannot be downloaded here, so tests save random-init weights to local files
and load them back through the same path real weights take (file, ``local-dir:``, HF cache).
Architectures of the ViT-L/H/g foundation models are built on torch's ``meta`` device:
shapes are checked without allocating or computing anything.
"""

from __future__ import annotations

import os
import re
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from slidepredict.core.errors import ConfigError
from slidepredict.features import (
    MissingWeightsError,
    get_encoder,
    list_encoders,
    load_encoder,
    register_encoder,
    resolve_weights,
    weight_status,
)
from slidepredict.features._builder import TileEncoder, _truncate, build_backbone, encoder_hash
from slidepredict.features._weights import ResolvedWeights, file_sha256, hf_cache_dir

ENCODERS = list_encoders()
CHEAP_PARAMS = 60e6  # built for real and run on CPU below this size


def _meta_encoder(name: str) -> tuple[TileEncoder, int]:
    cfg = get_encoder(name)
    with torch.device("meta"):
        backbone = build_backbone(cfg, device="meta")
        n_params = sum(p.numel() for p in backbone.parameters())
        if cfg.truncate_after:
            backbone = _truncate(backbone, cfg.truncate_after)
        return TileEncoder(backbone, cfg), n_params


def _n_params(name: str) -> int:
    return _meta_encoder(name)[1]


CHEAP = [n for n in ENCODERS if get_encoder(n).needs_weights and _n_params(n) < CHEAP_PARAMS]
HEAVY = [n for n in ENCODERS if get_encoder(n).needs_weights and n not in CHEAP]


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache and no network: what a cluster node without weights sees."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def _tiles(n: int, px: int, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, px, px, 3), dtype=np.uint8))


def test_builtin_encoders_registered():
    expected = {"resnet50-trunc", "uni", "uni2-h", "virchow2", "h-optimus-0", "prov-gigapath", "stain-texture"}
    assert expected <= set(ENCODERS)
    assert CHEAP, "at least one small pathology encoder must run on CPUs"
    assert {"lunit-vits16", "kaiko-vits16"} <= set(CHEAP)


def test_an_encoder_is_registered_once_by_name():
    with pytest.raises(ValueError, match="encoder 'uni' is registered twice"):
        register_encoder("uni")(lambda: get_encoder("uni"))
    with pytest.raises(TypeError, match="@register_encoder\\('my-encoder'\\)"):
        register_encoder(lambda: get_encoder("uni"))  # type: ignore[arg-type]
    assert all(get_encoder(n).name == n for n in ENCODERS)


def test_unknown_encoder_lists_the_known_ones():
    with pytest.raises(ConfigError) as err:
        get_encoder("resnet51")
    assert str(err.value) == (
        f"unknown encoder 'resnet51'; choose one of: {', '.join(ENCODERS)} (`slidepredict encoders` lists them)"
    )


@pytest.mark.parametrize("name", ENCODERS)
def test_config_is_complete(name):
    cfg = get_encoder(name)
    assert cfg.name == name and cfg.dim > 0 and cfg.input_px > 0
    assert len(cfg.mean) == 3 and len(cfg.std) == 3 and all(s > 0 for s in cfg.std)
    assert cfg.license and cfg.citation and cfg.description
    if cfg.needs_weights:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+", cfg.hf_hub_id)
        assert cfg.revision == "main" or re.fullmatch(r"[0-9a-f]{40}", cfg.revision)
        assert cfg.hub_ref == f"hf-hub:{cfg.hf_hub_id}@{cfg.revision}"


@pytest.mark.parametrize("name", ENCODERS)
def test_architecture_gives_the_registered_dim(name):
    """Shapes only, on the meta device: cheap even for 1.1B-parameter ViT-g models."""
    cfg = get_encoder(name)
    if cfg.needs_weights:
        model, _ = _meta_encoder(name)
        x = torch.empty((2, cfg.input_px, cfg.input_px, 3), dtype=torch.uint8, device="meta")
    else:  # hand-crafted: cheap to run for real
        model, x = load_encoder(name).module, _tiles(2, cfg.input_px)
    assert tuple(model(x).shape) == (2, cfg.dim)


def _assert_loaded(enc, state) -> None:
    """Every tensor the encoder computes with is the saved one (a truncated backbone keeps a prefix, in order)."""
    got = list(enc.module.backbone.state_dict().values())
    assert 0 < len(got) <= len(state)
    for key, value in zip(state, got):
        torch.testing.assert_close(value, state[key], rtol=0, atol=0)


@pytest.mark.parametrize("name", CHEAP)
def test_weights_file_roundtrip(name, tmp_path):
    """Random weights saved to a file load back through the real path (meta build + assign)."""
    cfg = get_encoder(name)
    state = build_backbone(cfg, seed=3).state_dict()
    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    enc = load_encoder(name, weights=path)
    _assert_loaded(enc, state)
    with torch.inference_mode():
        out = enc.module(_tiles(1, cfg.input_px))
    assert out.shape == (1, cfg.dim) and torch.isfinite(out).all()
    assert enc.weights.source == "file" and enc.encoder_hash != encoder_hash(cfg, ResolvedWeights("random", seed=3))


def test_pickle_checkpoint_loads_like_random_init(tmp_path):
    """torch.save'd weights (loaded with weights_only=True) give exactly the random-init model's features."""
    cfg = get_encoder("resnet50-trunc")
    torch.save({"state_dict": build_backbone(cfg, seed=3).state_dict()}, tmp_path / "w.pth")
    from_file, same_init = load_encoder(cfg.name, weights=tmp_path / "w.pth"), load_encoder(cfg.name, weights="random-3")
    x = _tiles(1, 96)  # a CNN takes any size; small keeps the test fast
    with torch.inference_mode():
        torch.testing.assert_close(from_file.module(x), same_init.module(x))
    assert same_init.encoder_hash.endswith("-random-3") and from_file.encoder_hash != same_init.encoder_hash


def _fake_hub_cache(cache, cfg, state) -> str:
    """The on-disk layout huggingface_hub uses: blobs named by sha256, snapshots linking to them."""
    repo = cache / f"models--{cfg.hf_hub_id.replace('/', '--')}"
    commit = cfg.revision if cfg.revision != "main" else "a" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    tmp = cache / "tmp.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
    digest = file_sha256(tmp)
    (repo / "blobs").mkdir()
    shutil.move(tmp, repo / "blobs" / digest)
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    os.symlink(repo / "blobs" / digest, snap / cfg.weight_files[0])
    return digest


def test_weights_from_hf_cache(offline_cache):
    cfg = get_encoder("lunit-vits16")
    assert weight_status(cfg) == "missing"
    state = build_backbone(cfg, seed=5).state_dict()
    digest = _fake_hub_cache(offline_cache, cfg, state)
    assert weight_status(cfg) == "cached"
    enc = load_encoder("lunit-vits16")
    assert enc.weights.source == "hf-cache" and enc.weights.identity == f"sha256:{digest}"
    _assert_loaded(enc, state)


def test_weights_from_local_dir(tmp_path):
    cfg = get_encoder("kaiko-vits16")
    save_file(build_backbone(cfg, seed=1).state_dict(), str(tmp_path / "model.safetensors"))
    enc = load_encoder("kaiko-vits16", weights=f"local-dir:{tmp_path}")
    assert enc.weights.source == "local-dir" and enc.weights.path == tmp_path / "model.safetensors"


def test_missing_weights_offline_message(offline_cache):
    """The one error a user without weights sees: encoder, where we looked, how to fetch them."""
    with pytest.raises(MissingWeightsError) as err:
        resolve_weights(get_encoder("uni"))
    assert str(err.value) == (
        "no weights for encoder 'uni': no --weights given and MahmoodLab/uni@main "
        f"(model.safetensors or pytorch_model.bin) is not in the Hugging Face cache {offline_cache} "
        "(HF_HUB_OFFLINE is set, so nothing was downloaded). On a connected machine accept the licence at "
        "https://huggingface.co/MahmoodLab/uni, run `hf auth login` and `hf download MahmoodLab/uni --revision main`, "
        "then copy that cache folder here (or point HF_HUB_CACHE at it); or pass --weights FILE or "
        "--weights local-dir:FOLDER. `--weights random` is for tests only."
    )
    assert hf_cache_dir() == offline_cache


def test_unreachable_hub_fails_fast_without_offline_flag(offline_cache, monkeypatch):
    """Without HF_HUB_OFFLINE a machine with no network must not sit through the hub's retries."""
    import socket
    import time

    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE")
    with socket.socket() as s:  # a local port nobody listens on: connection refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    start = time.perf_counter()
    with pytest.raises(MissingWeightsError) as err:
        resolve_weights(get_encoder("uni"))
    assert time.perf_counter() - start < 10
    assert "(the Hugging Face hub is not reachable from this machine). On a connected machine" in str(err.value)


@pytest.mark.parametrize("name", HEAVY + CHEAP)
def test_every_hub_encoder_reports_missing_weights(name, offline_cache):
    """Never silently random: without weights, each hub encoder fails with the same clear error."""
    cfg = get_encoder(name)
    assert weight_status(cfg) == "missing"
    with pytest.raises(MissingWeightsError, match=rf"^no weights for encoder '{re.escape(name)}': .*{re.escape(cfg.hf_hub_id)}"):
        load_encoder(name)


def test_bad_weight_specs(tmp_path):
    cfg = get_encoder("lunit-vits16")
    with pytest.raises(MissingWeightsError) as err:
        resolve_weights(cfg, tmp_path / "nope.safetensors")
    assert str(err.value) == (
        f"weights file {tmp_path / 'nope.safetensors'} for encoder 'lunit-vits16' not found; pass an existing "
        ".safetensors/.bin/.pth file, local-dir:FOLDER, or nothing to use the Hugging Face cache"
    )
    with pytest.raises(ConfigError) as err:
        resolve_weights(cfg, tmp_path)
    assert str(err.value) == f"--weights {tmp_path} is a folder; for a folder of hub files use --weights local-dir:{tmp_path}"
    with pytest.raises(MissingWeightsError, match=r"^no weights for encoder 'lunit-vits16' in local-dir:"):
        resolve_weights(cfg, f"local-dir:{tmp_path}")
    with pytest.raises(ConfigError, match=r"^encoder 'stain-texture' has no weights to load; drop --weights x$"):
        resolve_weights(get_encoder("stain-texture"), "x")


def test_weights_that_do_not_fit_or_are_corrupt(tmp_path):
    vit = tmp_path / "vit.safetensors"
    save_file(build_backbone(get_encoder("lunit-vits16")).state_dict(), str(vit))
    with pytest.raises(ConfigError, match=r"^weights file .*vit.safetensors does not fit encoder 'resnet50-trunc' \(resnet50\): "):
        load_encoder("resnet50-trunc", weights=vit)
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match=r"^cannot read weights file .*bad.bin: "):
        load_encoder("lunit-vits16", weights=bad)


def test_resnet50_trunc_is_layer3_pooled():
    """The CLAM encoder: conv stem + layers 1-3 of ResNet-50, average-pooled, 1024-d."""
    enc = load_encoder("resnet50-trunc", weights="random")
    names = [type(m).__name__ for m in enc.module.backbone]
    assert names[-2:] == ["AdaptiveAvgPool2d", "Flatten"]
    assert sum(p.numel() for p in enc.module.parameters()) < 9e6  # layer4 (15M params) is gone
    out = enc.module(_tiles(1, 224))
    assert out.shape == (1, 1024) and (out >= 0).all()  # pooled ReLU activations


def test_encoders_command_lists_status(offline_cache):
    from typer.testing import CliRunner

    from slidepredict.cli import app

    result = CliRunner().invoke(app, ["encoders"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name in ENCODERS:
        assert name in result.output
    row = next(line for line in result.output.splitlines() if "stain-texture" in line)
    assert "built-in" in row
    assert "missing" in next(line for line in result.output.splitlines() if " uni " in line)
