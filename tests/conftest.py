"""Shared tiny fixtures, inherited by every subfolder (tests/library, tests/train, ... mirror the code's folders);
plain helpers that several files share are in helpers.py. Tests never touch the network: offline mode is set before
huggingface_hub is imported.

Markers (pyproject.toml): ``slow`` (more than a few seconds), ``browser``, ``load``. The quick subset:
``python -m pytest -q -m "not slow and not browser and not load"``.
"""

import os

# Must happen before anything imports huggingface_hub / diffusers (they read these once, at import).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["DIFFUSERS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")

import pytest
import torch

# Tiny tensors gain nothing from intra-op threads, and on a busy 2-core machine OpenMP spinning makes every tiny
# forward ~50x slower. INDI_TEST_THREADS overrides.
torch.set_num_threads(int(os.environ.get("INDI_TEST_THREADS", "1")))

TINY_NET_KWARGS = dict(
    width=8,
    encoder_blocks=(1, 1),
    decoder_blocks=(1, 1),
    middle_blocks=1,
    time_embedding_dim=16,
)


def make_tiny_net(seed: int = 0, perturb: bool = True):
    """A tiny InDINet. With ``perturb``, the zero-initialised layer scales / FiLM are randomised so that the
    network is not the identity (otherwise most pipeline checks would be vacuous)."""
    from indi_pipeline import InDINet

    torch.manual_seed(seed)
    net = InDINet(**TINY_NET_KWARGS)
    if perturb:
        generator = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for name, param in net.named_parameters():
                if name.endswith(("scale1", "scale2")) or name.startswith(("time_mlp.2", "outro")):
                    param.copy_(0.1 * torch.randn(param.shape, generator=generator))
    return net.eval()


def make_tiny_pipeline(
    eps: float = 0.0,
    upscale_factor: int = 1,
    seed: int = 0,
    perturb: bool = True,
    task: str | None = None,
    **scheduler_kwargs,
):
    from indi_pipeline import InDIPipeline, InDIScheduler

    pipe = InDIPipeline(
        unet=make_tiny_net(seed, perturb),
        scheduler=InDIScheduler(eps=eps, **scheduler_kwargs),
        upscale_factor=upscale_factor,
        task=task,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_tiny_repo(folder, upscale_factor: int = 1, task: str | None = None):
    """A tiny InDINet + InDIScheduler pipeline saved like a Hub repo (model_index.json, unet/, scheduler/); the net
    is left as initialised (close to the identity: restored images stay close to their input)."""
    make_tiny_pipeline(eps=0.02, upscale_factor=upscale_factor, perturb=False, task=task).save_pretrained(folder)
    return folder


@pytest.fixture
def tiny_net():
    return make_tiny_net()


@pytest.fixture
def tiny_pipe():
    return make_tiny_pipeline()


@pytest.fixture
def noisy_pipe():
    return make_tiny_pipeline(eps=0.05)


@pytest.fixture(scope="session")
def inductor_cache(tmp_path_factory):
    """One torch.compile kernel cache for the test session: tests that compile the same tiny net share kernels."""
    from indi_pipeline.acceleration import COMPILE_CACHE_ENV

    folder = tmp_path_factory.mktemp("inductor")
    previous = os.environ.get(COMPILE_CACHE_ENV)
    os.environ[COMPILE_CACHE_ENV] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop(COMPILE_CACHE_ENV, None)
    else:
        os.environ[COMPILE_CACHE_ENV] = previous


@pytest.fixture(scope="module")
def train_indi():
    """train/train_indi.py as a module (its ``main(argv)`` runs a whole training in this process)."""
    import importlib.util

    from helpers import SCRIPT

    spec = importlib.util.spec_from_file_location("train_indi_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def clean_dir(tmp_path_factory):
    """A folder of three 80x80 textures to train on."""
    from helpers import make_folder

    return make_folder(tmp_path_factory.mktemp("clean") / "train")


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty HF cache that huggingface_hub (and so diffusers) uses by default, offline."""
    import huggingface_hub.constants

    home = tmp_path / "hf_home"
    cache = home / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads its constants at import: patch the module attributes its functions read at call time.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HOME", str(home))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HUGGINGFACE_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return cache
