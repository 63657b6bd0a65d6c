"""Every registered MIL head honours the one interface; tests are parametrised over the registry."""

from __future__ import annotations

import logging

import pytest
import torch

from slidepredict.core.errors import ConfigError
from slidepredict.mil import MILHead, create_mil, list_mil, register_mil

D, C = 24, 3


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(3, 12, D, generator=g)
    coords = torch.randint(0, 20_000, (3, 12, 2), generator=g)
    mask = torch.ones(3, 12, dtype=torch.bool)
    mask[1, 8:] = False
    mask[2, 3:] = False
    return feats, coords, mask


def test_registry_lists_the_four_heads() -> None:
    assert list_mil() == ["attention", "mean", "tile-vote", "transformer"]


@pytest.mark.parametrize("name", list_mil())
def test_output_shapes_attention_and_padding(name: str) -> None:
    torch.manual_seed(0)
    head = create_mil(name, D, C).eval()
    feats, coords, mask = _batch()
    out = head(feats, coords, mask)
    assert out.logits.shape == (3, C)
    assert out.attention.shape == (3, 12)
    assert out.tile_scores.shape == (3, 12, C)
    assert torch.allclose(out.attention.sum(1), torch.ones(3), atol=1e-5)
    assert (out.attention[~mask] == 0).all() and (out.tile_scores[~mask] == 0).all()
    assert (out.attention[mask] > 0).all()
    # Padding never changes a bag's result: bag 2 alone (3 tiles) equals bag 2 padded to 12.
    alone = head(feats[2:, :3], coords[2:, :3], mask[2:, :3])
    assert torch.allclose(alone.logits, out.logits[2:], atol=1e-5)
    assert torch.allclose(alone.attention, out.attention[2:, :3], atol=1e-5)


@pytest.mark.parametrize("name", list_mil())
def test_trains_without_coords_and_gradients_are_finite(name: str) -> None:
    torch.manual_seed(0)
    head = create_mil(name, D, C)
    feats, _, mask = _batch(1)
    out = head(feats, None, mask)
    loss = head.loss(out, torch.tensor([0, 1, 2]), mask, torch.tensor([1.0, 2.0, 0.5]))
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss)
    grads = {n: p.grad for n, p in head.named_parameters() if p.grad is not None}
    assert "classifier.weight" in grads or "tiles.1.weight" in grads
    assert all(torch.isfinite(g).all() for g in grads.values())
    assert head.hparams and all(isinstance(v, (int, float, str)) for v in head.hparams.values())


@pytest.mark.parametrize("name", ["attention", "mean", "transformer"])
def test_patient_logits_decompose_into_tile_scores(name: str) -> None:
    """Linear classifiers after pooling: logits = sum_i attention_i * tile_scores_i (what heatmaps rely on)."""
    head = create_mil(name, D, C).eval()
    feats, coords, mask = _batch(2)
    out = head(feats, coords, mask)
    assert torch.allclose(torch.einsum("bn,bnc->bc", out.attention, out.tile_scores), out.logits, atol=1e-5)


@pytest.mark.parametrize("name", list_mil())
def test_one_output_for_values_and_risks_follows_the_tiles(name: str) -> None:
    """Continuous and survival targets use one output: it must vary with the bag and decompose into tile scores.

    (tile-vote once took the softmax of its single output, a constant: its values did not depend on the bag.)
    """
    torch.manual_seed(0)
    head = create_mil(name, D, 1).eval()
    feats, coords, mask = _batch(4)
    out = head(feats, coords, mask)
    assert out.logits.shape == (3, 1) and out.tile_scores.shape == (3, 12, 1)
    assert out.logits[:, 0].std() > 1e-3  # not a constant
    assert torch.allclose(torch.einsum("bn,bnc->bc", out.attention, out.tile_scores), out.logits, atol=1e-5)


def test_tile_vote_patient_probability_is_mean_tile_probability() -> None:
    head = create_mil("tile-vote", D, C).eval()
    feats, coords, mask = _batch(3)
    out = head(feats, coords, mask)
    tile_p = torch.softmax(out.tile_scores, -1)
    expected = torch.stack([tile_p[b][mask[b]].mean(0) for b in range(3)])
    assert torch.allclose(torch.softmax(out.logits, -1), expected, atol=1e-5)


def test_transformer_uses_coordinates() -> None:
    torch.manual_seed(0)
    head = create_mil("transformer", D, C).eval()
    feats, coords, mask = _batch(4)
    moved = coords.clone()
    moved[..., 0] = coords[..., 0].flip(1)
    assert not torch.allclose(head(feats, coords, mask).logits, head(feats, moved, mask).logits)


def test_transformer_tile_scores_are_each_tiles_own_verdict() -> None:
    """Context mixes tiles in the transformer; the heatmap's per-tile score must not: changing other tiles,
    or their positions, leaves a tile's score as it was (while the patient logit does change)."""
    torch.manual_seed(0)
    head = create_mil("transformer", D, C).eval()
    feats, coords, mask = _batch(4)
    out = head(feats, coords, mask)
    other = feats.clone()
    other[:, 1:] = torch.randn_like(other[:, 1:])
    changed = head(other, coords.flip(1), mask)
    assert torch.allclose(changed.tile_scores[:, 0], out.tile_scores[:, 0], atol=1e-6)
    assert not torch.allclose(changed.logits, out.logits)


def test_unknown_model_and_option_are_config_errors() -> None:
    with pytest.raises(ConfigError) as e:
        create_mil("clam", D, C)
    assert str(e.value) == "unknown MIL model 'clam'; available: attention, mean, tile-vote, transformer"
    with pytest.raises(ConfigError) as e:
        create_mil("attention", D, C, hiden=64)
    assert str(e.value) == "MIL model 'attention' has no option 'hiden'; options: hidden, attention_dim, dropout, instance_weight"


def test_registering_a_name_twice_warns(caplog: pytest.LogCaptureFixture) -> None:
    import slidepredict.mil._registry as reg

    original = reg._REGISTRY["mean"]
    try:
        with caplog.at_level(logging.WARNING):
            @register_mil("mean")
            class OtherMean(MILHead):
                pass
        assert "MIL head 'mean' registered twice" in caplog.text
    finally:
        reg._REGISTRY["mean"] = original


def test_transformer_positions_are_physical() -> None:
    """The same tissue scanned at 0.25 and 0.5 um/px (coords twice as large) is the same bag in microns."""
    import numpy as np

    from slidepredict.featurefile import positions_um

    torch.manual_seed(0)
    head = create_mil("transformer", 8, 2, dropout=0.0).eval()
    feats = torch.randn(1, 6, 8)
    px = np.array([[0, 0], [512, 0], [1024, 512], [0, 1024], [2048, 2048], [4096, 0]])
    mask = torch.ones(1, 6, dtype=torch.bool)
    at_40x = torch.as_tensor(positions_um(px * 2, 0.25))[None]
    at_20x = torch.as_tensor(positions_um(px, 0.5))[None]
    assert torch.allclose(head(feats, at_40x, mask).logits, head(feats, at_20x, mask).logits, atol=1e-6)
    # the bag's extent no longer sets the scale: moving one far tile leaves the others' codes alone
    codes = head.pos(at_20x, mask)
    moved = at_20x.clone()
    moved[0, 5, 0] += 50_000.0
    assert torch.allclose(head.pos(moved, mask)[0, :5], codes[0, :5])


def test_a_patients_slides_are_kept_apart(tmp_path) -> None:
    import numpy as np

    from slidepredict.cohort.build import build_cohort
    from slidepredict.featurefile import write_h5_atomic
    from slidepredict.featurefile.read import SLIDE_GAP_UM

    coords = np.array([[0, 0], [224, 0]], dtype=np.int64)
    for i, mpp in enumerate((0.5, 0.25)):
        write_h5_atomic(tmp_path / "f" / f"s{i}.h5", {"features": np.ones((2, 4), np.float32), "coords": coords},
                        {"encoder": "e", "mpp": mpp})
    (tmp_path / "slides.csv").write_text("PATIENT,FILENAME\nP,s0\nP,s1\n")
    cohort = build_cohort(tmp_path / "f", tmp_path / "slides.csv")
    _, where = cohort.load_bag("P")
    assert where.tolist() == [[0, 0], [112, 0], [SLIDE_GAP_UM, 0], [SLIDE_GAP_UM + 56, 0]]


def test_a_transformer_checkpoint_from_before_physical_positions_is_refused(tmp_path) -> None:
    from slidepredict.featurefile import FeatureSpec
    from slidepredict.training import ModelMeta, load_model, save_checkpoint
    from slidepredict.training.checkpoint import CheckpointError

    head = create_mil("transformer", 8, 2)
    old = {k: v for k, v in head.hparams.items() if k != "min_period_um"}
    meta = ModelMeta(model="transformer", model_hparams=old, target="MSI", categories=["a", "b"],
                     features=FeatureSpec("e", "h", 8).to_dict(), train_patients=["p"], slidepredict_version="0.9.0")
    path = save_checkpoint(tmp_path / "old.ckpt", head.state_dict(), meta, {})
    with pytest.raises(CheckpointError) as e:
        load_model(path)
    assert str(e.value) == (f"{path}: this transformer head was trained by slidepredict 0.9.0, whose transformer head "
                            "was built differently (no 'min_period_um'); retrain it with this version")
