"""InDI scheduler: the t-schedule, the inference update and the training-side forward process.

Inversion by Direct Iteration (Delbracio & Milanfar, TMLR 2023) walks from a degraded image y at t = 1 to the
clean image at t = 0. With F the network's estimate of the clean image,

    x_{t-d} = (d / t) F(x_t, t) + (1 - d / t) x_t            (+ fresh noise for the Brownian schedule)

which is exactly one Euler step of ``FlowMatchEulerDiscreteScheduler`` with sigma = t and v = (x_t - F) / t.

Timesteps follow the diffusers habit: ``timesteps = t * num_train_timesteps`` (floats), and the network receives
those values. ``sigmas`` holds the t values themselves, ending with 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

NOISE_SCHEDULES = ("constant", "brownian")
TIMESTEP_SPACINGS = ("uniform", "power")
T_SAMPLINGS = ("uniform", "mixture", "one")


@dataclass
class InDISchedulerOutput(BaseOutput):
    """Output of :meth:`InDIScheduler.step`.

    Args:
        prev_sample (`torch.Tensor`): x_{t-d}, the sample for the next (smaller) t.
        pred_original_sample (`torch.Tensor`): the network's estimate of the clean image at this step.
    """

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor


class InDIScheduler(SchedulerMixin, ConfigMixin):
    """Scheduler for Inversion by Direct Iteration.

    Args:
        num_train_timesteps (`int`, defaults to 1000):
            Scale between t in [0, 1] and the timestep values given to the network (``t * num_train_timesteps``).
        eps (`float`, defaults to 0.0):
            Noise level of the stochastic path: x_t = (1 - t) x + t y + t * eps_t * noise. 0 gives a deterministic walk.
        noise_schedule (`str`, defaults to `"constant"`):
            `"constant"`: eps_t = eps. `"brownian"`: eps_t = eps / sqrt(t), with fresh noise added at every step.
        timestep_spacing (`str`, defaults to `"uniform"`):
            `"uniform"`: equal steps in t. `"power"`: t_i = t0 * (1 - i / N) ** spacing_power, more steps near t = 0.
        spacing_power (`float`, defaults to 2.0): exponent of the `"power"` spacing.
        t_sampling (`str`, defaults to `"uniform"`):
            Training distribution p(t): `"uniform"` on (0, 1], `"mixture"` (uniform mixed with a point mass at t = 1
            of weight `t_one_probability`), or `"one"` (always t = 1: plain one-step regression, the baseline).
        t_one_probability (`float`, defaults to 0.1): weight of the point mass at t = 1 for `"mixture"`.
    """

    order = 1
    _compatibles = []

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        eps: float = 0.0,
        noise_schedule: str = "constant",
        timestep_spacing: str = "uniform",
        spacing_power: float = 2.0,
        t_sampling: str = "uniform",
        t_one_probability: float = 0.1,
    ):
        if noise_schedule not in NOISE_SCHEDULES:
            raise ValueError(f"noise_schedule must be one of {NOISE_SCHEDULES}, got {noise_schedule!r}")
        if timestep_spacing not in TIMESTEP_SPACINGS:
            raise ValueError(f"timestep_spacing must be one of {TIMESTEP_SPACINGS}, got {timestep_spacing!r}")
        if t_sampling not in T_SAMPLINGS:
            raise ValueError(f"t_sampling must be one of {T_SAMPLINGS}, got {t_sampling!r}")
        if eps < 0 or not math.isfinite(eps):
            raise ValueError(f"eps must be a finite number >= 0, got {eps}")
        if not 0.0 <= t_one_probability <= 1.0:
            raise ValueError(f"t_one_probability must be in [0, 1], got {t_one_probability}")
        if spacing_power <= 0:
            raise ValueError(f"spacing_power must be > 0, got {spacing_power}")

        self.init_noise_sigma = 1.0
        self.num_inference_steps = None
        self.sigmas = torch.tensor([1.0, 0.0])
        self.timesteps = self.sigmas[:-1] * num_train_timesteps
        self._step_index = None
        self._begin_index = None

    @property
    def step_index(self):
        """Index of the current step; advances by one after each :meth:`step`."""
        return self._step_index

    @property
    def begin_index(self):
        return self._begin_index

    def set_begin_index(self, begin_index: int = 0):
        self._begin_index = begin_index

    # ----------------------------------------------------------------------------------------------- noise levels
    def noise_std(self, t: torch.Tensor | float) -> torch.Tensor:
        """Standard deviation t * eps_t of the path noise at time t (0 at t = 0 for both schedules)."""
        t = torch.as_tensor(t, dtype=torch.float32)
        eps = self.config.eps
        if self.config.noise_schedule == "brownian":
            # t * eps / sqrt(t) = eps * sqrt(t): finite at t = 0, unlike eps_t itself.
            return eps * t.clamp(min=0).sqrt()
        return eps * t

    def fresh_noise_std(self, t: float, t_next: float) -> float:
        """Std of the fresh noise a step from t to t_next adds on top of the carried path noise.

        The update carries (t_next / t) * std_t of noise; fresh noise tops it up to std_{t_next}. Written out in
        closed form (in double precision) because the difference of squares, computed from float32 t values, leaves
        a rounding residue: the constant schedule then drew a full-size noise image per step to add ~1e-6 of noise.
        """
        if self.config.eps == 0.0 or self.config.noise_schedule == "constant":
            return 0.0  # std_t = eps * t is carried exactly by the (t_next / t) scaling
        # brownian: std_t^2 = eps^2 t, so std_{t_next}^2 - (t_next / t)^2 std_t^2 = eps^2 t_next (t - t_next) / t.
        return self.config.eps * math.sqrt(max(t_next * (t - t_next) / t, 0.0))

    # --------------------------------------------------------------------------------------------------- inference
    def set_timesteps(
        self,
        num_inference_steps: int,
        device: str | torch.device | None = None,
        start_t: float = 1.0,
    ):
        """Sets the t values of the walk: ``num_inference_steps`` steps from ``start_t`` down to 0.

        Args:
            num_inference_steps (`int`): number of network evaluations (1 = plain regression).
            device: where the timesteps live.
            start_t (`float`, defaults to 1.0): the t the walk starts from, in (0, 1]. For denoising a model trained
                up to sigma_max, an image with noise sigma starts at t = sigma / sigma_max (the pipeline's `strength`).
        """
        if not isinstance(num_inference_steps, int) or isinstance(num_inference_steps, bool) or num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be an integer >= 1, got {num_inference_steps!r}")
        if not (isinstance(start_t, (int, float)) and 0.0 < start_t <= 1.0):
            raise ValueError(f"start_t (strength) must be in (0, 1], got {start_t!r}")
        fraction = 1.0 - torch.arange(num_inference_steps + 1, dtype=torch.float64) / num_inference_steps
        if self.config.timestep_spacing == "power":
            fraction = fraction**self.config.spacing_power
        sigmas = (start_t * fraction).to(torch.float32)
        sigmas[-1] = 0.0
        self.num_inference_steps = num_inference_steps
        self.sigmas = sigmas.to(device)
        self.timesteps = (sigmas[:-1] * self.config.num_train_timesteps).to(device)
        self._step_index = None
        self._begin_index = None

    def scale_model_input(self, sample: torch.Tensor, timestep: float | torch.Tensor | None = None) -> torch.Tensor:
        """InDI needs no input scaling; kept for interchangeability with other schedulers."""
        return sample

    def prepare_start_sample(
        self, degraded: torch.Tensor, generator: torch.Generator | list[torch.Generator] | None = None
    ) -> torch.Tensor:
        """x at the first t of the walk: the degraded image plus path noise t0 * eps_t0 * eta (design.md §1)."""
        if self.num_inference_steps is None:
            raise RuntimeError("call set_timesteps() before prepare_start_sample()")
        std = float(self.noise_std(self.sigmas[0].item()))
        if std == 0.0:
            return degraded
        noise = randn_tensor(degraded.shape, generator=generator, device=degraded.device, dtype=degraded.dtype)
        return degraded + std * noise

    def _init_step_index(self, timestep):
        # The step index counts calls: never look float timesteps up by value.
        self._step_index = 0 if self.begin_index is None else self.begin_index

    def step(
        self,
        model_output: torch.Tensor,
        timestep: float | torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | list[torch.Generator] | None = None,
        return_dict: bool = True,
    ) -> InDISchedulerOutput | tuple:
        """One InDI step from t to t - d.

        Args:
            model_output (`torch.Tensor`): the network's prediction of the CLEAN image F(x_t, t).
            timestep: the current timestep (only used for bookkeeping; the schedule position is the step index).
            sample (`torch.Tensor`): x_t.
            generator: source of the fresh noise of the Brownian schedule (unused for the constant schedule).
            return_dict (`bool`): return an :class:`InDISchedulerOutput` (True) or a tuple.
        """
        if self.num_inference_steps is None:
            raise RuntimeError("call set_timesteps() before step()")
        if self.step_index is None:
            self._init_step_index(timestep)
        if self.step_index >= self.num_inference_steps:
            raise RuntimeError(f"step() called more than num_inference_steps={self.num_inference_steps} times")

        # Upcast: the update mixes nearly equal images and fp16 loses the small steps near t = 0.
        x_t = sample.to(torch.float32)
        pred_clean = model_output.to(torch.float32)
        t = self.sigmas[self.step_index].item()
        t_next = self.sigmas[self.step_index + 1].item()
        # lerp: one pass over the image instead of two multiplies and an add (the pipeline's own time matters on CPU).
        prev_sample = torch.lerp(x_t, pred_clean, (t - t_next) / t)
        fresh_std = self.fresh_noise_std(t, t_next)
        if fresh_std > 0.0:
            noise = randn_tensor(x_t.shape, generator=generator, device=x_t.device, dtype=x_t.dtype)
            prev_sample = prev_sample + fresh_std * noise
        self._step_index += 1
        prev_sample = prev_sample.to(sample.dtype)
        pred_clean = pred_clean.to(model_output.dtype)
        if not return_dict:
            return (prev_sample, pred_clean)
        return InDISchedulerOutput(prev_sample=prev_sample, pred_original_sample=pred_clean)

    # ---------------------------------------------------------------------------------------------------- training
    def sample_t(
        self,
        batch_size: int,
        generator: torch.Generator | None = None,
        device: str | torch.device | None = None,
    ) -> torch.Tensor:
        """Draws training times t ~ p(t) (shape (batch_size,), float32, in (0, 1]) per ``config.t_sampling``."""
        if self.config.t_sampling == "one":
            return torch.ones(batch_size, device=device)
        # 1 - U[0, 1) lies in (0, 1]: t = 0 would make the update's d / t undefined and teaches nothing.
        draw_device = generator.device if generator is not None else device
        t = 1.0 - torch.rand(batch_size, generator=generator, device=draw_device)
        if self.config.t_sampling == "mixture":
            at_one = torch.rand(batch_size, generator=generator, device=t.device) < self.config.t_one_probability
            t = torch.where(at_one, torch.ones_like(t), t)
        return t.to(device) if device is not None else t

    def forward_sample(
        self,
        clean: torch.Tensor,
        degraded: torch.Tensor,
        t: torch.Tensor,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Training-side interpolation x_t = (1 - t) x + t y + t * eps_t * noise, with t of shape (N,)."""
        t = t.to(device=clean.device, dtype=clean.dtype).reshape(-1, *([1] * (clean.ndim - 1)))
        x_t = (1.0 - t) * clean + t * degraded
        if self.config.eps > 0:
            if noise is None:
                raise ValueError("forward_sample needs `noise` when eps > 0")
            x_t = x_t + self.noise_std(t).to(clean.dtype) * noise
        return x_t

    def t_to_timestep(self, t: torch.Tensor) -> torch.Tensor:
        """Network timestep values for times t (the same scaling inference uses)."""
        return t * self.config.num_train_timesteps

    def __len__(self):
        return self.config.num_train_timesteps
