"""The networks a benchmark times: the zoo's default InDINet, a configuration spec, a saved repo, a null network."""

from __future__ import annotations

from pathlib import Path

import torch


def perturb(net: torch.nn.Module) -> torch.nn.Module:
    """A fresh InDINet starts as the identity (zero layer scales / FiLM); give those weights small random values
    so that every layer does real arithmetic, like a trained model (the timing does not depend on the values)."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in net.named_parameters():
            if name.endswith(("scale1", "scale2")) or name.startswith("time_mlp.2"):
                param.copy_(0.02 * torch.randn(param.shape, generator=generator))
    return net


def network_spec(model: str) -> dict | None:
    """``"InDINet(width=48, unshuffle=4)"`` -> ``{"width": 48, "unshuffle": 4}`` (literal values only, never
    evaluated as code); None when ``model`` is not such a spec (then it is a folder or a Hub id)."""
    import ast

    text = model.strip()
    if not text.startswith("InDINet("):
        return None
    try:
        call = ast.parse(text, mode="eval").body
        if not isinstance(call, ast.Call) or call.args:
            raise ValueError("give keyword arguments only")
        return {keyword.arg: ast.literal_eval(keyword.value) for keyword in call.keywords}
    except (SyntaxError, ValueError) as error:
        raise SystemExit(f"indi: error: --model {model!r} is not InDINet(key=value, ...): {error}") from None


def load_network(model: str | None):
    """(network, scheduler, description): the default InDINet() or the network of a saved pipeline / network."""
    from indi_pipeline.network import InDINet
    from indi_pipeline.pipeline_indi import InDIPipeline
    from indi_pipeline.scheduling_indi import InDIScheduler

    if model is None:
        torch.manual_seed(0)
        return perturb(InDINet()), InDIScheduler(eps=0.02), "InDINet() default config (random weights)"
    config = network_spec(model)
    if config is not None:
        torch.manual_seed(0)
        try:
            net = InDINet(**config)
        except (TypeError, ValueError) as error:
            raise SystemExit(f"indi: error: --model {model!r}: {error}") from None
        return perturb(net), InDIScheduler(eps=0.02), f"{model} (random weights)"
    path = Path(model)
    if path.is_dir() and not (path / "model_index.json").exists() and (path / "config.json").exists():
        return InDINet.from_pretrained(path), InDIScheduler(eps=0.02), f"InDINet from {model}"
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.disable_progress_bar()
    try:
        pipe = InDIPipeline.from_pretrained(model)
    except Exception as error:  # noqa: BLE001 - report any loader failure in one line
        raise SystemExit(f"indi: error: cannot load the model {model!r}: {type(error).__name__}: {error}") from None
    return pipe.unet, pipe.scheduler, f"{type(pipe.unet).__name__} from {model}"


def null_network(like: torch.nn.Module) -> torch.nn.Module:
    """A network that returns its input at once, with the same input multiple as ``like``: the pipeline around it
    takes only the pipeline's own time (image conversion, padding, scheduler steps, output)."""
    from diffusers.configuration_utils import ConfigMixin, register_to_config
    from diffusers.models.modeling_utils import ModelMixin
    from diffusers.models.unets.unet_2d import UNet2DOutput

    class NullNet(ModelMixin, ConfigMixin):
        @register_to_config
        def __init__(self, in_channels: int = 3, input_multiple: int = 1):
            super().__init__()
            self.anchor = torch.nn.Parameter(torch.zeros(1))  # gives the model a device and a dtype

        @property
        def input_multiple(self) -> int:
            return self.config.input_multiple

        def forward(self, sample, timestep, return_dict: bool = True):
            return UNet2DOutput(sample=sample) if return_dict else (sample,)

    reference = next(like.parameters())  # fp16 networks: the null one stays fp32, which only changes a cast
    multiple = int(getattr(like, "input_multiple", 1))
    return NullNet(input_multiple=multiple).to(device=reference.device)


def count_parameters(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
