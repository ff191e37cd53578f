"""InDIPipeline: restore images by Inversion by Direct Iteration, in the style of diffusers' DDPMPipeline."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from diffusers.utils import BaseOutput, replace_example_docstring

from .degradations import bicubic_upsample
from .image_io import ImageBatch, merge, tensor_to_output, to_image_batches
from .safe_loading import SafePipelineLoading
from .scheduling_indi import InDIScheduler
from .tiling import AUTO_TILE_PIXELS, DEFAULT_TILE_OVERLAP, DEFAULT_TILE_SIZE, count_tiles, predict_tiled

OUTPUT_TYPES = ("pil", "np", "pt")

EXAMPLE_DOC_STRING = """
    Examples:
        ```py
        >>> import torch
        >>> from PIL import Image
        >>> from indi_pipeline import InDIPipeline

        >>> pipe = InDIPipeline.from_pretrained("model_cards/indi-motion_deblur")
        >>> blurry = Image.open("blurry.png")
        >>> sharp = pipe(blurry, num_inference_steps=10, generator=torch.Generator().manual_seed(0)).images[0]
        >>> smooth = pipe(blurry, num_inference_steps=1).images[0]  # plain regression: best PSNR, blurrier
        ```
"""


@dataclass
class InDIPipelineOutput(BaseOutput):
    """Output of :class:`InDIPipeline`.

    Args:
        images: restored images: a list of PIL images, or an (N, H, W, C) numpy array / (N, C, H, W) tensor in
            [0, 1] (a list of those when the inputs had different sizes).
        trajectory: with ``return_trajectory=True``, the walk's samples x_t from the start to t = 0, each in the
            same format as ``images``; else None.
        timesteps: the t values of ``trajectory`` (start first, 0 last; of the first image when ``strength="auto"``
            started the images at different t), or None.
        start_t: the t each image's walk started from (its ``strength``, estimated with ``strength="auto"``); 0 for
            an image the estimator found nothing to restore in, which is returned unchanged.
        estimated_t: with ``strength="auto"``, the t the estimator read off each image (before its start curve and
            ``nothing_below`` turned it into ``start_t``); else None.
        jpeg_quality: with ``strength="auto"``, the IJG quality of each image that came from a JPEG file (None for
            the others); else None.
    """

    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor | list
    trajectory: list | None = None
    timesteps: list[float] | None = None
    start_t: list[float] | None = None
    estimated_t: list[float] | None = None
    jpeg_quality: list[int | None] | None = None


class InDIPipeline(SafePipelineLoading, DiffusionPipeline):
    r"""Image restoration by Inversion by Direct Iteration (Delbracio & Milanfar, TMLR 2023).

    The walk starts at the degraded image (t = ``strength``) and takes ``num_inference_steps`` small steps to t = 0.
    One step is plain regression (best PSNR, smooth); more steps add realistic detail.

    Args:
        unet ([`InDINet`] or [`~diffusers.UNet2DModel`]):
            Network F(x_t, timestep) -> predicted clean image, called as ``unet(sample, timestep).sample``.
        scheduler ([`InDIScheduler`]): the t-schedule and update.
        upscale_factor (`int`, defaults to 1): for super-resolution repos, the input is low-resolution and is first
            upsampled (bicubic, as in training) by this factor; the output is this many times larger.
        task (`str`, *optional*): the task id the weights were trained for (informative; see `indi_pipeline.tasks`).
        estimator ([`InDIStartEstimator`], *optional*): reads each image's t on the task's path, for
            ``strength="auto"`` (the default where the repo has one).
    """

    model_cpu_offload_seq = "unet"
    _optional_components = ["estimator"]
    _callback_tensor_inputs = ["sample", "pred_original_sample"]

    def __init__(
        self, unet, scheduler: InDIScheduler, upscale_factor: int = 1, task: str | None = None, estimator=None
    ):
        super().__init__()
        if int(upscale_factor) != upscale_factor or upscale_factor < 1:
            raise ValueError(f"upscale_factor must be a positive integer, got {upscale_factor!r}")
        self.register_modules(unet=unet, scheduler=scheduler, estimator=estimator)
        self.register_to_config(upscale_factor=int(upscale_factor), task=task)
        # The network's forwards run under torch.autocast in this dtype (None: in the weights' own dtype); the walk
        # itself stays float32. acceleration.optimize_for_inference chooses it for the device.
        self.autocast_dtype: torch.dtype | None = None

    @property
    def input_multiple(self) -> int:
        """Height and width the network needs a multiple of (InDINet says; for UNet2DModel, 2^(levels - 1))."""
        multiple = getattr(self.unet, "input_multiple", None)
        if multiple is None:
            levels = getattr(self.unet.config, "block_out_channels", None)
            multiple = 2 ** (len(levels) - 1) if levels else 1
        return int(multiple)

    def _network_memory_format(self) -> torch.memory_format:
        """channels_last if the network's spatial convolutions are (see acceleration.py), else contiguous.

        Feeding the network input in its own format saves oneDNN a reorder at every step.
        """
        for parameter in self.unet.parameters():
            if parameter.ndim == 4 and parameter.shape[-1] > 1:  # 1x1 kernels are "contiguous" in both formats
                channels_last = parameter.is_contiguous(memory_format=torch.channels_last)
                return (
                    torch.channels_last if channels_last and not parameter.is_contiguous() else torch.contiguous_format
                )
        return torch.contiguous_format

    def _check_arguments(self, num_inference_steps, strength, output_type, callback_on_step_end_tensor_inputs):
        if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, (int, np.integer)):
            raise ValueError(f"num_inference_steps must be an integer >= 1, got {num_inference_steps!r}")
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
        if isinstance(strength, str) and strength == "auto":
            if self.estimator is None:
                raise ValueError(
                    'strength="auto" needs the repo\'s start estimator, and this pipeline has none (its repo has no '
                    "estimator/ folder): pass a number in (0, 1] as strength"
                )
        elif not isinstance(strength, (int, float)) or not 0.0 < strength <= 1.0:
            raise ValueError(f'strength must be "auto" or in (0, 1] (1 = start the walk at t = 1), got {strength!r}')
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")
        unknown = [k for k in callback_on_step_end_tensor_inputs if k not in self._callback_tensor_inputs]
        if unknown:
            raise ValueError(f"callback tensor inputs {unknown} are not in {self._callback_tensor_inputs}")
        in_channels = getattr(self.unet.config, "in_channels", 3)
        if in_channels != 3:
            raise ValueError(f"the network takes {in_channels} channels; InDIPipeline restores RGB (3 channels)")

    def _prepare_degraded(self, batch: ImageBatch, device) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The walk's starting image y (upsampled for super-resolution) and the alpha at the output size."""
        rgb, alpha = batch.rgb.to(device=device, dtype=torch.float32), batch.alpha
        factor = self.config.upscale_factor
        if factor > 1:
            rgb = bicubic_upsample(rgb, scale=factor)
            if alpha is not None:
                alpha = bicubic_upsample(alpha.to(device=device, dtype=torch.float32), scale=factor)
        return rgb, alpha

    def _pad(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Pads to the network's multiple (never resizes): reflection, or replication where the image is too small."""
        height, width = x.shape[-2:]
        multiple = self.input_multiple
        pad_h, pad_w = -height % multiple, -width % multiple
        if pad_h == 0 and pad_w == 0:
            return x, (height, width)
        mode = "reflect" if pad_h < height and pad_w < width else "replicate"
        return F.pad(x, (0, pad_w, 0, pad_h), mode=mode), (height, width)

    def _padded_size(self, batch: ImageBatch) -> tuple[int, int]:
        """Height and width the network will see for a batch: after the SR upscale, padded to the multiple."""
        multiple = self.input_multiple
        height, width = (side * self.config.upscale_factor for side in batch.rgb.shape[-2:])
        return -(-height // multiple) * multiple, -(-width // multiple) * multiple

    def _tile_size_for(self, batch: ImageBatch, tile_size: int | None, overlap: int) -> int | None:
        """The tile size for this batch (a multiple of the network's), or None to run it whole."""
        multiple = self.input_multiple
        padded_h, padded_w = self._padded_size(batch)
        if tile_size is None:
            if padded_h * padded_w <= AUTO_TILE_PIXELS:
                return None
            tile_size = DEFAULT_TILE_SIZE
        if isinstance(tile_size, bool) or not isinstance(tile_size, (int, np.integer)) or tile_size < 0:
            raise ValueError(f"tile_size must be None, 0 (no tiling) or a positive integer, got {tile_size!r}")
        if tile_size == 0 or (padded_h <= tile_size and padded_w <= tile_size):
            return None
        tile_size = -(-int(tile_size) // multiple) * multiple
        if not 0 <= overlap < tile_size // 2:
            raise ValueError(f"tile_overlap must be in [0, tile_size / 2) = [0, {tile_size // 2}), got {overlap}")
        return tile_size

    def _network_calls(self, batch: ImageBatch, tile_size: int | None, overlap: int, tile_batch_size: int) -> int:
        """Network calls per step for a batch (the progress bar's unit)."""
        if tile_size is None:
            return 1
        if not isinstance(tile_batch_size, (int, np.integer)) or tile_batch_size < 1:
            raise ValueError(f"tile_batch_size must be a positive integer, got {tile_batch_size!r}")
        height, width = self._padded_size(batch)
        tiles = batch.rgb.shape[0] * count_tiles(height, width, tile_size, overlap, self.input_multiple)
        return -(-tiles // tile_batch_size)

    def _estimate_starts(self, batches: list[ImageBatch]) -> tuple[list[ImageBatch], list[float], list[float]]:
        """strength="auto": the batches regrouped so that each walks from one start t (neighbouring images with the
        same start stay together: K copies of one photo are still one batch), their starts, and each image's
        estimate (`InDIStartEstimator.start_for_image`; a start of 0 = nothing to restore). Once per image, before
        any tiling."""
        groups, starts, estimates = [], [], []
        for batch in batches:
            image_estimates = self.estimator.estimate(batch.rgb).tolist()
            image_starts = [self.estimator.start_for_image(e, batch.jpeg_quality) for e in image_estimates]
            estimates += [float(e) for e in image_estimates]
            first = 0
            for k in range(1, len(image_starts) + 1):
                if k < len(image_starts) and image_starts[k] == image_starts[first]:
                    continue
                alpha = None if batch.alpha is None else batch.alpha[first:k]
                groups.append(ImageBatch(batch.rgb[first:k], alpha, batch.grayscale, batch.jpeg_quality))
                starts.append(image_starts[first])
                first = k
        return groups, starts, estimates

    def _predict_clean(self, model_input: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        """The network's prediction of the clean image, under autocast when `autocast_dtype` is set."""
        dtype = self.autocast_dtype
        with torch.autocast(model_input.device.type, dtype=dtype, enabled=dtype is not None):
            return self.unet(model_input, timestep).sample

    @staticmethod
    def _generators_for(generator, start: int, count: int):
        """Slices a per-image list of generators for one same-size group; a single generator is shared."""
        if isinstance(generator, list):
            return generator[start : start + count]
        return generator

    @torch.no_grad()
    @replace_example_docstring(EXAMPLE_DOC_STRING)
    def __call__(
        self,
        image,
        num_inference_steps: int = 10,
        strength: float | str | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        eps: float | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        return_trajectory: bool = False,
        callback_on_step_end: Callable | None = None,
        callback_on_step_end_tensor_inputs: list[str] = None,
        tile_size: int | None = None,
        tile_overlap: int = DEFAULT_TILE_OVERLAP,
        tile_batch_size: int = 4,
    ) -> InDIPipelineOutput | tuple:
        r"""Restores degraded images.

        Args:
            image (`PIL.Image.Image`, `np.ndarray`, `torch.Tensor` or a list of them):
                Degraded image(s): RGB, grayscale, or with alpha (passed through untouched), any size (padded to the
                network's multiple and cropped back). Numpy: H x W [x C] or N x H x W x C, uint8/uint16/float in
                [0, 1]. Torch: [N x] C x H x W float in [0, 1]. For super-resolution repos, the low-resolution image.
            num_inference_steps (`int`, defaults to 10):
                Number of InDI steps: 1 = plain regression (best PSNR, smooth); more = sharper, more realistic detail.
            strength (`float` or `"auto"`, defaults to `"auto"` where the repo has an estimator, else 1.0):
                Where the walk starts, in (0, 1]. For denoising with a known noise level sigma,
                ``strength = sigma / sigma_max`` of the model (e.g. 25/50 for the zoo's denoiser). ``"auto"``
                estimates it per image with the repo's estimator; an image found clean is returned unchanged.
            generator (`torch.Generator` or a list of one per image, *optional*):
                The only source of randomness (path noise eps); the same seed gives the same output, bit for bit.
            eps (`float`, *optional*): overrides the scheduler's noise level for this call.
            output_type (`str`, defaults to `"pil"`): `"pil"`, `"np"` or `"pt"`.
            return_dict (`bool`, defaults to `True`): return an [`InDIPipelineOutput`] instead of a tuple.
            return_trajectory (`bool`, defaults to `False`): also return the intermediate images of the walk.
            callback_on_step_end (`Callable`, *optional*):
                Called as ``callback_on_step_end(pipe, step_index, timestep, callback_kwargs)`` after each step;
                may return a dict that replaces ``"sample"``.
            callback_on_step_end_tensor_inputs (`list[str]`): tensors passed in ``callback_kwargs``
                (`"sample"`, `"pred_original_sample"`).
            tile_size (`int`, *optional*):
                Run the network on overlapping tiles of this size (rounded up to the network's multiple) to bound
                memory on large images. `None` tiles automatically (512 px tiles) above 1 megapixel; 0 never tiles.
            tile_overlap (`int`, defaults to 64): least overlap of neighbouring tiles, blended with smooth weights.
            tile_batch_size (`int`, defaults to 4): tiles per network call.

        Examples:

        Returns:
            [`InDIPipelineOutput`] or `tuple`: restored ``images`` (and the ``trajectory`` when asked); as a tuple,
            ``(images,)`` or ``(images, trajectory)``.
        """
        if callback_on_step_end_tensor_inputs is None:
            callback_on_step_end_tensor_inputs = ["sample"]
        if strength is None:
            strength = "auto" if self.estimator is not None else 1.0
        self._check_arguments(num_inference_steps, strength, output_type, callback_on_step_end_tensor_inputs)
        batches = to_image_batches(image)
        estimated_ts = None
        if strength == "auto":
            batches, start_ts, estimated_ts = self._estimate_starts(batches)
        else:
            start_ts = [float(strength)] * len(batches)
        total = sum(batch.rgb.shape[0] for batch in batches)
        if isinstance(generator, list) and len(generator) != total:
            raise ValueError(f"got {len(generator)} generators for {total} images; pass one per image or a single one")

        # A per-call scheduler: its step counter is state, and a shared one would break concurrent calls (the Space).
        scheduler = copy.deepcopy(self.scheduler)
        if eps is not None:
            scheduler = type(scheduler).from_config(scheduler.config, eps=float(eps))
        device = self._execution_device
        model_dtype = self.unet.dtype
        memory_format = self._network_memory_format()
        tile_sizes = [self._tile_size_for(batch, tile_size, tile_overlap) for batch in batches]
        network_calls = [
            self._network_calls(batch, size, tile_overlap, tile_batch_size) for batch, size in zip(batches, tile_sizes)
        ]

        outputs, trajectories, start = [], [], 0
        with self.progress_bar(total=num_inference_steps * sum(network_calls)) as progress_bar:
            for batch, batch_tile_size, start_t in zip(batches, tile_sizes, start_ts):
                count = batch.rgb.shape[0]
                batch_generator = self._generators_for(generator, start, count)
                start += count
                degraded, alpha = self._prepare_degraded(batch, device)
                sample, (height, width) = self._pad(degraded)

                def finish(x, height=height, width=width, alpha=alpha, grayscale=batch.grayscale):
                    return merge(x[..., :height, :width], alpha, grayscale)

                if start_t == 0.0:  # the estimator found nothing to restore: the image comes back as it is
                    progress_bar.update(
                        num_inference_steps * self._network_calls(batch, batch_tile_size, tile_overlap, tile_batch_size)
                    )
                    outputs.append(finish(sample).float())
                    if return_trajectory:
                        trajectories.append([finish(sample)] * (num_inference_steps + 1))
                    continue
                scheduler.set_timesteps(int(num_inference_steps), device=device, start_t=start_t)
                sample = scheduler.prepare_start_sample(sample, generator=batch_generator)

                frames = [finish(sample)] if return_trajectory else None
                for i, t in enumerate(scheduler.timesteps):
                    model_input = scheduler.scale_model_input(sample, t).to(model_dtype, memory_format=memory_format)
                    # A scalar: the same t for the whole batch, which the network applies in fewer passes.
                    timestep = t.to(device=device, dtype=torch.float32)
                    if batch_tile_size is None:
                        model_output = self._predict_clean(model_input, timestep)
                        progress_bar.update()
                    else:
                        model_output = predict_tiled(
                            self._predict_clean,
                            model_input,
                            timestep,
                            batch_tile_size,
                            tile_overlap,
                            tile_batch_size,
                            on_batch=lambda _: progress_bar.update(),
                            align=self.input_multiple,
                        )
                    step = scheduler.step(model_output, t, sample, generator=batch_generator)
                    sample = step.prev_sample
                    if callback_on_step_end is not None:
                        callback_kwargs = {
                            "sample": sample,
                            "pred_original_sample": step.pred_original_sample,
                        }
                        callback_kwargs = {k: callback_kwargs[k] for k in callback_on_step_end_tensor_inputs}
                        callback_outputs = callback_on_step_end(self, i, t, callback_kwargs) or {}
                        sample = callback_outputs.pop("sample", sample)
                    if return_trajectory:
                        frames.append(finish(sample))

                outputs.append(finish(sample).float())
                if return_trajectory:
                    trajectories.append(frames)

        images = self._format(outputs, output_type)
        trajectory = None
        if return_trajectory:
            trajectory = [
                self._format([frames[k].float() for frames in trajectories], output_type)
                for k in range(num_inference_steps + 1)
            ]
        self.maybe_free_model_hooks()

        if not return_dict:
            return (images, trajectory) if return_trajectory else (images,)
        timesteps = None
        if return_trajectory:
            first_walk = next((t for t in start_ts if t > 0), None)
            if first_walk is None:
                timesteps = [0.0] * (num_inference_steps + 1)
            else:
                scheduler.set_timesteps(int(num_inference_steps), device=device, start_t=first_walk)
                timesteps = scheduler.sigmas.cpu().tolist()
        per_image_t = [t for batch, t in zip(batches, start_ts) for _ in range(batch.rgb.shape[0])]
        qualities = (
            None
            if estimated_ts is None
            else [batch.jpeg_quality for batch in batches for _ in range(batch.rgb.shape[0])]
        )
        return InDIPipelineOutput(
            images=images,
            trajectory=trajectory,
            timesteps=timesteps,
            start_t=per_image_t,
            estimated_t=estimated_ts,
            jpeg_quality=qualities,
        )

    @staticmethod
    def _format(groups: list[torch.Tensor], output_type: str):
        """Same-size groups -> one batch in ``output_type``; mixed sizes -> a list with one entry per image."""
        if output_type == "pil":
            return [img for group in groups for img in tensor_to_output(group, "pil")]
        if len({tuple(g.shape[1:]) for g in groups}) == 1:
            return tensor_to_output(torch.cat(groups), output_type)
        return [tensor_to_output(item[None], output_type)[0] for group in groups for item in group]
