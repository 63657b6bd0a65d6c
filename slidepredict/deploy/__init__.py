"""Deployment: one model or a fold ensemble applied to an external cohort, with statistics when labelled.

Names are imported on first use, so reading ``DeploySettings`` never imports torch.
"""

from slidepredict.core.lazy import lazy_exports

_API = {
    **dict.fromkeys(("DeployResult", "EnsembleError", "deploy", "expand_models", "load_members", "member_names"),
                    "slidepredict.deploy.ensemble"),
    "DeploySettings": "slidepredict.deploy.settings",
}
__getattr__ = lazy_exports(__name__, _API)
__all__ = sorted(_API)
