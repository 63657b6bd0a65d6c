"""Patient-level training with Lightning: bags, the LightningModule, checkpoints, cross-validation, inference.

Deployment and heatmaps need only :func:`load_model`, :func:`predict_bag` and :func:`predict_cohort`.
Names are imported on first use, so ``slidepredict.training.settings`` stays free of torch.
"""

from slidepredict.core.lazy import lazy_exports

_API = {
    **dict.fromkeys(("CheckpointError", "ModelMeta", "load_checkpoint", "save_checkpoint"), "slidepredict.training.checkpoint"),
    **dict.fromkeys(("crossval", "pooled_auroc", "train_final"), "slidepredict.training.folds"),
    "make_splits": "slidepredict.training.splits",
    **dict.fromkeys(("check_trainable", "fit"), "slidepredict.training.fitting"),
    **dict.fromkeys(("LoadedModel", "load_model", "predict_bag", "predict_cohort"), "slidepredict.training.predict"),
    **dict.fromkeys(("TrainSettings", "TrainingSettings"), "slidepredict.training.settings"),
}
__getattr__ = lazy_exports(__name__, _API)
__all__ = sorted(_API)
