"""InDIScheduler: the update of design.md §1, its parity with FlowMatchEulerDiscreteScheduler, the noise schedules,
the training-side helpers and the config round trip."""

import math

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from indi_pipeline import InDIScheduler, InDISchedulerOutput


def _fixed_tensors(seed=0, shape=(2, 3, 8, 8)):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g), torch.rand(shape, generator=g)


def _expected_sigmas(n, start_t=1.0, spacing="uniform", power=2.0):
    frac = [1.0 - i / n for i in range(n + 1)]
    if spacing == "power":
        frac = [f**power for f in frac]
    return [start_t * f for f in frac]


# ------------------------------------------------------------------------------------------------------ timesteps
@pytest.mark.parametrize("n", [1, 3, 10])
@pytest.mark.parametrize("spacing", ["uniform", "power"])
@pytest.mark.parametrize("start_t", [1.0, 0.4])
def test_set_timesteps(n, spacing, start_t):
    sched = InDIScheduler(timestep_spacing=spacing, spacing_power=2.0)
    sched.set_timesteps(n, start_t=start_t)
    expected = torch.tensor(_expected_sigmas(n, start_t, spacing), dtype=torch.float32)
    assert sched.sigmas.shape == (n + 1,)
    assert sched.timesteps.shape == (n,)
    torch.testing.assert_close(sched.sigmas, expected, rtol=0, atol=1e-7)
    assert sched.sigmas[0].item() == pytest.approx(start_t)
    assert sched.sigmas[-1].item() == 0.0
    assert torch.all(sched.sigmas[:-1] > sched.sigmas[1:])  # strictly decreasing
    torch.testing.assert_close(sched.timesteps, sched.sigmas[:-1] * 1000)
    assert sched.timesteps.dtype == torch.float32


# ---------------------------------------------------------------------------------------------------- the update
@pytest.mark.parametrize("n", [1, 3, 10])
@pytest.mark.parametrize("spacing", ["uniform", "power"])
@pytest.mark.parametrize("start_t", [1.0, 0.6])
def test_step_matches_formula(n, spacing, start_t):
    """x_{t-d} = (d/t) F + (1 - d/t) x_t with a fixed tensor standing in for the model."""
    fake_clean, x = _fixed_tensors()
    sched = InDIScheduler(timestep_spacing=spacing)
    sched.set_timesteps(n, start_t=start_t)
    ts = _expected_sigmas(n, start_t, spacing)
    for i, timestep in enumerate(sched.timesteps):
        assert sched.step_index in (None, i)
        t, t_next = ts[i], ts[i + 1]
        d = t - t_next
        expected = (d / t) * fake_clean + (1 - d / t) * x
        out = sched.step(fake_clean, timestep, x)
        assert isinstance(out, InDISchedulerOutput)
        torch.testing.assert_close(out.prev_sample, expected, rtol=1e-5, atol=1e-6)
        assert torch.equal(out.pred_original_sample, fake_clean)
        x = out.prev_sample
    # the walk ends on the model's estimate: the last step has d = t
    torch.testing.assert_close(x, fake_clean, rtol=0, atol=1e-6)
    with pytest.raises(RuntimeError, match="num_inference_steps"):
        sched.step(fake_clean, sched.timesteps[-1], x)


def test_one_step_is_regression():
    fake_clean, x = _fixed_tensors(1)
    sched = InDIScheduler()
    sched.set_timesteps(1)
    out = sched.step(fake_clean, sched.timesteps[0], x)
    assert torch.equal(out.prev_sample, fake_clean)


@pytest.mark.parametrize("n", [1, 3, 10])
@pytest.mark.parametrize("spacing", ["uniform", "power"])
@pytest.mark.parametrize("start_t", [1.0, 0.7])
def test_parity_with_flow_match_euler(n, spacing, start_t):
    """With sigma = t and v = (x_t - F) / t, the InDI update is FlowMatchEulerDiscreteScheduler's Euler step."""
    ours = InDIScheduler(timestep_spacing=spacing)
    ours.set_timesteps(n, start_t=start_t)
    theirs = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0)
    theirs.set_timesteps(sigmas=ours.sigmas[:-1].tolist())
    torch.testing.assert_close(theirs.sigmas, ours.sigmas, rtol=0, atol=1e-7)
    torch.testing.assert_close(theirs.timesteps, ours.timesteps, rtol=0, atol=1e-4)

    g = torch.Generator().manual_seed(3)
    x_ours = x_theirs = torch.rand(1, 3, 8, 8, generator=g)
    for k, (t_ours, t_theirs) in enumerate(zip(ours.timesteps, theirs.timesteps)):
        # a model output that depends on the sample (like a real network), identical for both walks
        fake_clean = 0.5 * x_ours + 0.25 * torch.sin(7.0 * x_ours + k)
        x_ours = ours.step(fake_clean, t_ours, x_ours).prev_sample
        t = theirs.sigmas[theirs.step_index or 0]
        v = (x_theirs - fake_clean) / t
        x_theirs = theirs.step(v, t_theirs, x_theirs).prev_sample
        torch.testing.assert_close(x_ours, x_theirs, rtol=0, atol=1e-6)


def test_tuple_output():
    fake_clean, x = _fixed_tensors()
    a, b = InDIScheduler(), InDIScheduler()
    a.set_timesteps(3)
    b.set_timesteps(3)
    out = a.step(fake_clean, a.timesteps[0], x, return_dict=True)
    tup = b.step(fake_clean, b.timesteps[0], x, return_dict=False)
    assert isinstance(tup, tuple) and len(tup) == 2
    assert torch.equal(tup[0], out.prev_sample)
    assert torch.equal(tup[1], out.pred_original_sample)
    assert torch.equal(out[0], out.prev_sample)  # BaseOutput indexing


def test_step_upcasts_and_keeps_dtype():
    fake_clean, x = _fixed_tensors()
    sched = InDIScheduler()
    sched.set_timesteps(3)
    out = sched.step(fake_clean.half(), sched.timesteps[0], x.half())
    assert out.prev_sample.dtype == torch.float16
    assert out.pred_original_sample.dtype == torch.float16


def test_scale_model_input_and_init_noise_sigma():
    sched = InDIScheduler()
    x = torch.rand(1, 3, 4, 4)
    assert sched.scale_model_input(x, 5.0) is x
    assert sched.init_noise_sigma == 1.0
    assert InDIScheduler.order == 1


# ------------------------------------------------------------------------------------------------- noise schedules
@pytest.mark.parametrize("schedule", ["constant", "brownian"])
def test_noise_std(schedule):
    eps = 0.3
    sched = InDIScheduler(eps=eps, noise_schedule=schedule)
    for t in (0.0, 0.25, 1.0):
        eps_t = eps if schedule == "constant" else (eps / math.sqrt(t) if t > 0 else 0.0)
        assert float(sched.noise_std(t)) == pytest.approx(t * eps_t, abs=1e-7)


def test_brownian_fresh_noise_variance():
    """With F = 0 and a noise-free x_t, x_{t-d} is the fresh noise alone; its std must top the carried noise
    (t_next / t) * std(t) up to std(t_next), i.e. (t-d) * sqrt(eps_{t-d}^2 - eps_t^2) of design.md §1."""
    eps = 0.5
    sched = InDIScheduler(eps=eps, noise_schedule="brownian")
    sched.set_timesteps(4)
    zeros = torch.zeros(1, 1, 400, 500)  # 200k draws
    g = torch.Generator().manual_seed(0)
    for i in range(3):  # the last step goes to t = 0 where no noise is left
        t, t_next = sched.sigmas[i].item(), sched.sigmas[i + 1].item()
        out = sched.step(zeros, sched.timesteps[i], zeros, generator=g).prev_sample
        expected = math.sqrt(float(sched.noise_std(t_next)) ** 2 - (t_next / t * float(sched.noise_std(t))) ** 2)
        # the design's form of the same quantity
        design = t_next * math.sqrt((eps / math.sqrt(t_next)) ** 2 - (eps / math.sqrt(t)) ** 2)
        assert expected == pytest.approx(design, rel=1e-5)
        assert expected > 0
        assert out.std().item() == pytest.approx(expected, rel=0.01)
        assert abs(out.mean().item()) < 0.01 * expected + 1e-4
    out = sched.step(zeros, sched.timesteps[3], zeros, generator=g).prev_sample
    assert torch.count_nonzero(out) == 0


@pytest.mark.parametrize("schedule", ["constant", "brownian"])
def test_fresh_noise_std_is_the_difference_of_variances(schedule):
    """The closed form equals std(t_next)^2 - ((t_next / t) std(t))^2 computed in double precision."""
    eps = 0.02
    sched = InDIScheduler(eps=eps, noise_schedule=schedule)
    std = (lambda t: eps * t) if schedule == "constant" else (lambda t: eps * math.sqrt(t))
    for t, t_next in [(1.0, 0.9), (0.7, 0.3), (0.5, 0.0), (0.125, 0.0625)]:
        expected = math.sqrt(max(std(t_next) ** 2 - (t_next / t * std(t)) ** 2, 0.0))
        assert sched.fresh_noise_std(t, t_next) == pytest.approx(expected, rel=1e-9, abs=1e-15)


def test_constant_schedule_draws_noise_only_at_the_start():
    """The constant schedule's steps carry the path noise exactly: no per-step draw (float32 t values used to leave
    a rounding residue that drew a full noise image each step for ~1e-6 of noise)."""
    sched = InDIScheduler(eps=0.02, noise_schedule="constant")
    sched.set_timesteps(10)
    g = torch.Generator().manual_seed(0)
    x = sched.prepare_start_sample(torch.rand(1, 3, 64, 64), generator=g)
    state = g.get_state()
    for t in sched.timesteps:
        x = sched.step(x * 0.9, t, x, generator=g).prev_sample
    assert torch.equal(g.get_state(), state)


@pytest.mark.parametrize("schedule", ["constant", "brownian"])
def test_path_marginal_noise(schedule):
    """F = 0, y = 0: the walk's x_t is pure path noise whose std is t * eps_t at every t of the walk."""
    sched = InDIScheduler(eps=0.4, noise_schedule=schedule)
    sched.set_timesteps(5)
    g = torch.Generator().manual_seed(1)
    zeros = torch.zeros(1, 1, 300, 300)
    x = sched.prepare_start_sample(zeros, generator=g)
    assert x.std().item() == pytest.approx(float(sched.noise_std(1.0)), rel=0.01)
    for i, timestep in enumerate(sched.timesteps):
        x = sched.step(zeros, timestep, x, generator=g).prev_sample
        t_next = sched.sigmas[i + 1].item()
        if t_next > 0:
            assert x.std().item() == pytest.approx(float(sched.noise_std(t_next)), rel=0.015)
    assert torch.count_nonzero(x) == 0


def _brownian_walk(generator):
    fake_clean, x = _fixed_tensors(2)
    sched = InDIScheduler(eps=0.2, noise_schedule="brownian")
    sched.set_timesteps(3)
    x = sched.prepare_start_sample(x, generator=generator)
    frames = [x]
    for timestep in sched.timesteps:
        x = sched.step(fake_clean, timestep, x, generator=generator).prev_sample
        frames.append(x)
    # the last step has d = t: it lands on F exactly, whatever the noise
    assert torch.equal(frames[-1], fake_clean)
    return torch.stack(frames[:-1])


def test_noise_comes_only_from_the_generator():
    torch.manual_seed(123)
    global_state = torch.get_rng_state()
    a = _brownian_walk(torch.Generator().manual_seed(7))
    b = _brownian_walk(torch.Generator().manual_seed(7))
    c = _brownian_walk(torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert torch.equal(torch.get_rng_state(), global_state)  # the global RNG was not touched


def test_constant_schedule_adds_no_noise_in_step():
    fake_clean, x = _fixed_tensors(4)
    sched = InDIScheduler(eps=0.3, noise_schedule="constant")
    sched.set_timesteps(4)
    g = torch.Generator().manual_seed(0)
    for i, timestep in enumerate(sched.timesteps):
        state = g.get_state()
        t, t_next = sched.sigmas[i].item(), sched.sigmas[i + 1].item()
        expected = ((t - t_next) / t) * fake_clean + (t_next / t) * x
        x = sched.step(fake_clean, timestep, x, generator=g).prev_sample
        torch.testing.assert_close(x, expected, rtol=1e-6, atol=1e-7)
        assert torch.equal(g.get_state(), state)  # no draw


def test_prepare_start_sample():
    y = torch.rand(1, 3, 8, 8)
    sched = InDIScheduler(eps=0.0)
    sched.set_timesteps(2)
    assert torch.equal(sched.prepare_start_sample(y), y)
    for schedule in ("constant", "brownian"):
        sched = InDIScheduler(eps=0.1, noise_schedule=schedule)
        sched.set_timesteps(2, start_t=0.5)
        noise = torch.randn(y.shape, generator=torch.Generator().manual_seed(5))
        x = sched.prepare_start_sample(y, generator=torch.Generator().manual_seed(5))
        torch.testing.assert_close(x, y + float(sched.noise_std(0.5)) * noise)
    with pytest.raises(RuntimeError, match="set_timesteps"):
        InDIScheduler().prepare_start_sample(y)


# ---------------------------------------------------------------------------------------------------- arguments
@pytest.mark.parametrize(
    "kwargs, word",
    [
        (dict(num_inference_steps=0), "num_inference_steps"),
        (dict(num_inference_steps=-2), "num_inference_steps"),
        (dict(num_inference_steps=2.5), "num_inference_steps"),
        (dict(num_inference_steps=3, start_t=0.0), "start_t"),
        (dict(num_inference_steps=3, start_t=1.5), "start_t"),
        (dict(num_inference_steps=3, start_t=-0.1), "start_t"),
    ],
)
def test_set_timesteps_rejects_bad_arguments(kwargs, word):
    with pytest.raises(ValueError, match=word):
        InDIScheduler().set_timesteps(**kwargs)


@pytest.mark.parametrize(
    "kwargs, word",
    [
        (dict(noise_schedule="cosine"), "noise_schedule"),
        (dict(timestep_spacing="karras"), "timestep_spacing"),
        (dict(t_sampling="beta"), "t_sampling"),
        (dict(eps=-0.1), "eps"),
        (dict(eps=float("nan")), "eps"),
        (dict(t_one_probability=1.5), "t_one_probability"),
        (dict(spacing_power=0.0), "spacing_power"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs, word):
    with pytest.raises(ValueError, match=word):
        InDIScheduler(**kwargs)


def test_step_before_set_timesteps():
    with pytest.raises(RuntimeError, match="set_timesteps"):
        InDIScheduler().step(torch.zeros(1), 1000.0, torch.zeros(1))


# ----------------------------------------------------------------------------------------------------- config
def _public(config):
    return {k: v for k, v in dict(config).items() if not k.startswith("_")}


def test_config_round_trip(tmp_path):
    sched = InDIScheduler(
        eps=0.07,
        noise_schedule="brownian",
        timestep_spacing="power",
        spacing_power=1.5,
        t_sampling="mixture",
        t_one_probability=0.2,
    )
    sched.save_config(tmp_path)
    assert (tmp_path / "scheduler_config.json").is_file()
    loaded = InDIScheduler.from_pretrained(tmp_path)
    assert isinstance(loaded, InDIScheduler)
    assert _public(loaded.config) == _public(sched.config)
    again = InDIScheduler.from_config(sched.config)
    assert _public(again.config) == _public(sched.config)
    overridden = InDIScheduler.from_config(sched.config, eps=0.0)
    assert overridden.config.eps == 0.0 and overridden.config.noise_schedule == "brownian"
    for s in (sched, loaded, again):
        s.set_timesteps(4, start_t=0.8)
    torch.testing.assert_close(loaded.sigmas, sched.sigmas)
    torch.testing.assert_close(again.timesteps, sched.timesteps)


# ---------------------------------------------------------------------------------------------------- training
def test_sample_t_one():
    t = InDIScheduler(t_sampling="one").sample_t(64, generator=torch.Generator().manual_seed(0))
    assert t.shape == (64,) and torch.all(t == 1.0)


def test_sample_t_uniform():
    sched = InDIScheduler(t_sampling="uniform")
    t = sched.sample_t(20000, generator=torch.Generator().manual_seed(0))
    assert t.shape == (20000,) and t.dtype == torch.float32
    assert t.min() > 0.0 and t.max() <= 1.0
    assert t.mean().item() == pytest.approx(0.5, abs=0.01)
    assert (t == 1.0).float().mean().item() < 1e-3
    again = sched.sample_t(20000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(t, again)


def test_sample_t_mixture():
    p = 0.3
    sched = InDIScheduler(t_sampling="mixture", t_one_probability=p)
    t = sched.sample_t(20000, generator=torch.Generator().manual_seed(0))
    assert t.min() > 0.0 and t.max() <= 1.0
    assert (t == 1.0).float().mean().item() == pytest.approx(p, abs=0.015)
    rest = t[t < 1.0]
    assert rest.mean().item() == pytest.approx(0.5, abs=0.015)


@pytest.mark.parametrize("schedule", ["constant", "brownian"])
def test_forward_sample(schedule):
    eps = 0.2
    sched = InDIScheduler(eps=eps, noise_schedule=schedule)
    g = torch.Generator().manual_seed(0)
    clean, degraded = torch.rand(4, 3, 6, 6, generator=g), torch.rand(4, 3, 6, 6, generator=g)
    noise = torch.randn(4, 3, 6, 6, generator=g)
    t = torch.tensor([0.0, 0.25, 0.5, 1.0])
    x_t = sched.forward_sample(clean, degraded, t, noise=noise)
    for i, ti in enumerate(t.tolist()):
        eps_t = eps if schedule == "constant" else (eps / math.sqrt(ti) if ti > 0 else 0.0)
        expected = (1 - ti) * clean[i] + ti * degraded[i] + ti * eps_t * noise[i]
        torch.testing.assert_close(x_t[i], expected, rtol=1e-5, atol=1e-6)
    assert torch.equal(x_t[0], clean[0])  # t = 0: the clean image
    torch.testing.assert_close(x_t[3], degraded[3] + eps * noise[3])  # t = 1: degraded + eps * noise
    with pytest.raises(ValueError, match="noise"):
        sched.forward_sample(clean, degraded, t)


def test_forward_sample_noise_free():
    sched = InDIScheduler(eps=0.0)
    clean, degraded = torch.zeros(2, 3, 4, 4), torch.ones(2, 3, 4, 4)
    x_t = sched.forward_sample(clean, degraded, torch.tensor([0.3, 1.0]))
    torch.testing.assert_close(x_t[0], torch.full((3, 4, 4), 0.3))
    assert torch.equal(x_t[1], degraded[1])
    torch.testing.assert_close(sched.t_to_timestep(torch.tensor([0.5])), torch.tensor([500.0]))
