"""The LightningModule around any registered MIL head: AdamW + one-cycle, class-weighted loss."""

from __future__ import annotations

import copy
from typing import Any

import lightning as L
import torch

from slidepredict.mil import MILOutput, create_mil
from slidepredict.training.data import BagBatch


class LitMIL(L.LightningModule):
    """Hyperparameters are plain types, so the checkpoint loads with ``weights_only=True``."""

    def __init__(
        self, model: str, in_dim: int, n_classes: int, model_hparams: dict[str, Any] | None = None,
        class_weights: list[float] | None = None, lr: float = 1e-4, weight_decay: float = 1e-2,
        feature_noise: float = 0.0, kind: str = "categorical",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.head = create_mil(model, in_dim, n_classes, **(model_hparams or {}))
        weights = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        self.register_buffer("class_weights", weights, persistent=False)
        self._val: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, batch: BagBatch) -> MILOutput:
        return self.head(batch.feats, batch.coords, batch.mask)

    def training_step(self, batch: BagBatch, batch_idx: int) -> torch.Tensor:
        if self.hparams.feature_noise > 0:  # in standard deviations of each feature: no bag is seen twice alike
            noise = torch.randn_like(batch.feats) * (self.hparams.feature_noise * self.head.feat_std)
            batch.feats = batch.feats + noise * batch.mask.unsqueeze(-1)
        out = self(batch)
        if self.hparams.kind == "continuous":  # Huber on the standardised target: robust to a few odd values
            loss = torch.nn.functional.huber_loss(out.logits[:, 0], batch.labels.float())
        elif self.hparams.kind == "survival":
            loss = cox_loss(out.logits[:, 0], batch.labels[:, 0], batch.labels[:, 1])
        else:
            loss = self.head.loss(out, batch.labels, batch.mask, self.class_weights)
        self.log("train_loss", loss, on_step=True, on_epoch=False, batch_size=len(batch.labels))
        return loss

    def validation_step(self, batch: BagBatch, batch_idx: int) -> None:
        self._val.append((self(batch).logits.detach(), batch.labels))

    def on_validation_epoch_end(self) -> None:
        """Patient-level weighted CE and Brier score over the whole inner validation set.

        The Brier score is what early stopping and the choice of start watch: it is bounded, so a
        patient whose label the slides do not show (label noise) cannot outweigh all the others
        the way one confident mistake does in the cross-entropy.
        """
        if not self._val:
            return
        logits = torch.cat([v[0] for v in self._val])
        labels = torch.cat([v[1] for v in self._val])
        self._val.clear()
        if self.hparams.kind == "survival":  # 1 - Harrell's C: 0.5 for a constant risk, 0 for a perfect order
            from lifelines.utils import concordance_index

            t, e = labels[:, 0].cpu().numpy(), labels[:, 1].cpu().numpy()
            c = concordance_index(t, -logits[:, 0].float().cpu().numpy(), e) if e.sum() > 0 else 0.5
            self.log("val_loss", 1.0 - c, prog_bar=True)
            self.log("val_discordance", 1.0 - c)
            return
        if self.hparams.kind == "continuous":  # mean squared error in SDs: 1 is predicting the training mean
            mse = ((logits[:, 0].float() - labels.float()) ** 2).mean()
            self.log("val_loss", mse, prog_bar=True)
            self.log("val_mse", mse)
            return
        loss = torch.nn.functional.cross_entropy(logits, labels, weight=self.class_weights)
        self.log("val_loss", loss, prog_bar=True)
        self.log("val_brier", weighted_brier(logits, labels, self.class_weights))

    def configure_optimizers(self) -> Any:
        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=self.hparams.lr, total_steps=max(1, int(self.trainer.estimated_stepping_batches))
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def cox_loss(risk: torch.Tensor, time: torch.Tensor, event: torch.Tensor) -> torch.Tensor:
    """Negative Cox partial log-likelihood of a batch (Breslow ties), per event; 0 for a batch without events.

    Each event patient's risk is compared with everyone in the batch still at risk at its time.
    The training sampler spreads event patients over the batches, so every batch holds some.
    """
    risk, time, event = risk.float(), time.float(), event.float()
    at_risk = time[None, :] >= time[:, None]  # row i: who is still at risk at patient i's time (i itself always)
    # -inf, not log(tiny): a patient no longer at risk must add exactly nothing, however high its risk
    log_denominator = torch.logsumexp(risk[None, :].expand_as(at_risk).masked_fill(~at_risk, float("-inf")), dim=1)
    n_events = event.sum()
    if n_events == 0:
        return risk.sum() * 0.0
    return -((risk - log_denominator) * event).sum() / n_events


def weighted_brier(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """Class-weighted mean multi-class Brier score (sum over classes; a constant 1/K prediction scores 1 - 1/K)."""
    probs = torch.softmax(logits.float(), -1)
    per = ((probs - torch.nn.functional.one_hot(labels, probs.shape[-1]).float()) ** 2).sum(-1)
    w = torch.ones_like(per) if weights is None else weights[labels]
    return (per * w).sum() / w.sum()


class KeepBest(L.Callback):
    """Best head weights (lowest val_loss) kept in memory: no Lightning checkpoint files to pickle or clean up."""

    def __init__(self, monitor: str = "val_loss") -> None:
        self.monitor = monitor
        self.best_score = float("inf")
        self.best_step = -1
        self.best_state: dict[str, torch.Tensor] | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        score = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or score is None:
            return
        if float(score) < self.best_score:
            self.best_score, self.best_step = float(score), trainer.global_step
            self.best_state = copy.deepcopy(pl_module.head.state_dict())  # type: ignore[union-attr]
