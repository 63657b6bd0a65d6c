"""Patient-level training with Lightning: bags, the LightningModule, checkpoints, cross-validation, inference.

Deployment and heatmaps need only :func:`load_model`, :func:`predict_bag` and :func:`predict_cohort`.
"""

from slidepredict.training.checkpoint import CheckpointError, ModelMeta, load_checkpoint, save_checkpoint
from slidepredict.training.crossval import crossval, make_splits, pooled_auroc, train_final
from slidepredict.training.fit import TrainConfig, check_trainable, fit
from slidepredict.training.predict import LoadedModel, load_model, predict_bag, predict_cohort

__all__ = [
    "CheckpointError", "LoadedModel", "ModelMeta", "TrainConfig", "check_trainable", "crossval", "fit",
    "load_checkpoint", "load_model", "make_splits", "pooled_auroc", "predict_bag", "predict_cohort",
    "save_checkpoint", "train_final",
]
