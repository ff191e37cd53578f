"""InDI: image restoration by Inversion by Direct Iteration (Delbracio & Milanfar, TMLR 2023), diffusers style.

The public names load lazily (PEP 562): ``import indi_pipeline.tasks`` and ``indi --help`` import neither torch nor
diffusers; the first use of ``InDIPipeline`` (or any name below) imports its module.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# name -> the module that defines it. diffusers' loader finds a component's load method through the base classes
# its library exports; for a published repo, InDIPipeline.load_config names this package as its components'
# library (see there), so it exports the two mixins as well.
_EXPORTS = {
    "InDINet": ".network",
    "InDIPipeline": ".pipeline_indi",
    "InDIPipelineOutput": ".pipeline_indi",
    "InDIScheduler": ".scheduling_indi",
    "InDISchedulerOutput": ".scheduling_indi",
    "TASKS": ".tasks",
    "Task": ".tasks",
    "get_task": ".tasks",
    "ModelMixin": "diffusers",
    "SchedulerMixin": "diffusers",
}

__all__ = [name for name in _EXPORTS if not name.endswith("Mixin")]


def __getattr__(name: str):
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name, __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


if TYPE_CHECKING:  # for type checkers and IDEs only
    from diffusers import ModelMixin, SchedulerMixin  # noqa: F401

    from .network import InDINet  # noqa: F401
    from .pipeline_indi import InDIPipeline, InDIPipelineOutput  # noqa: F401
    from .scheduling_indi import InDIScheduler, InDISchedulerOutput  # noqa: F401
    from .tasks import TASKS, Task, get_task  # noqa: F401
