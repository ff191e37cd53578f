"""InDI: image restoration by Inversion by Direct Iteration (Delbracio & Milanfar, TMLR 2023), diffusers style."""

# diffusers' loader finds a component's load method through the base classes its library exports; for a published
# repo, InDIPipeline.load_config names this package as its components' library (see there), so it exports the two.
from diffusers import ModelMixin, SchedulerMixin  # noqa: F401

from .network import InDINet
from .pipeline_indi import InDIPipeline, InDIPipelineOutput
from .scheduling_indi import InDIScheduler, InDISchedulerOutput
from .tasks import TASKS, Task, get_task

__version__ = "0.1.0"

__all__ = [
    "InDINet",
    "InDIPipeline",
    "InDIPipelineOutput",
    "InDIScheduler",
    "InDISchedulerOutput",
    "TASKS",
    "Task",
    "get_task",
]
