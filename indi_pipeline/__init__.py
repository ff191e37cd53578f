"""InDI: image restoration by Inversion by Direct Iteration (Delbracio & Milanfar, TMLR 2023), diffusers style."""

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
