"""Run configuration: pydantic models per stage, a YAML loader with one-line errors, the init template."""

from slidepredict.config.loader import RESOLVED_NAME, load_config, parse_config, to_yaml, write_resolved
from slidepredict.config.models import RunConfig
from slidepredict.config.template import reference_markdown, template_yaml

__all__ = [
    "RESOLVED_NAME", "RunConfig", "load_config", "parse_config", "reference_markdown",
    "template_yaml", "to_yaml", "write_resolved",
]
