"""InDINet: shapes, identity at initialisation, timestep handling, size checks and safetensors round trips."""

import pytest
import torch
from conftest import TINY_NET_KWARGS, make_tiny_net
from safetensors.torch import load_file

from indi_pipeline import InDINet


def _input(n=2, h=16, w=24, seed=0):
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(seed))


def test_output_shape(tiny_net):
    assert tiny_net.input_multiple == 8  # unshuffle 2 x 2 levels
    for shape in [(1, 3, 8, 8), (2, 3, 16, 24), (3, 3, 32, 8)]:
        x = torch.rand(shape)
        out = tiny_net(x, 500.0)
        assert out.sample.shape == x.shape
        assert out.sample.dtype == torch.float32
    (tup,) = tiny_net(x, 500.0, return_dict=False)
    assert torch.equal(tup, tiny_net(x, 500.0).sample)


def test_identity_at_initialisation():
    """Zero layer scales, zero FiLM and a zero output conv: a fresh network returns its input exactly."""
    torch.manual_seed(0)
    net = InDINet(**TINY_NET_KWARGS).eval()
    x = _input()
    for t in (0.0, 250.0, 1000.0):
        with torch.no_grad():
            assert torch.equal(net(x, t).sample, x)
    # and with the default (zoo) configuration
    net = InDINet().eval()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(net(x, 1000.0).sample, x)


def test_identity_is_not_a_dead_end():
    """Training from the identity init still moves the network (gradients reach the output conv first)."""
    torch.manual_seed(0)
    net = InDINet(**TINY_NET_KWARGS)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    x, target = _input(seed=1), _input(seed=2)
    for _ in range(3):
        loss = (net(x, 500.0).sample - target).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert not torch.equal(net(x, 500.0).sample, x)
    assert net.encoders[0][0].scale1.abs().sum() > 0


def test_channel_norm_applies_a_shared_film_in_its_own_pass_and_a_per_image_film_after():
    from indi_pipeline.network import ChannelLayerNorm, scaled_conv

    torch.manual_seed(0)
    norm = ChannelLayerNorm(8)
    x = torch.randn(3, 8, 5, 7)
    mean, var = x.mean(1, keepdim=True), x.var(1, unbiased=False, keepdim=True)
    normalised = (x - mean) / torch.sqrt(var + norm.eps)
    for batch in (1, 3):  # batch 1: the shared FiLM goes into layer_norm's affine
        gain, shift = torch.randn(batch, 8, 1, 1), torch.randn(batch, 8, 1, 1)
        torch.testing.assert_close(norm(x, gain, shift), normalised * (1 + gain) + shift, rtol=0, atol=1e-5)
        torch.testing.assert_close(
            norm(x.to(memory_format=torch.channels_last), gain, shift),
            normalised * (1 + gain) + shift,
            rtol=0,
            atol=1e-5,
        )
    conv, scale = torch.nn.Conv2d(8, 4, 1), torch.randn(1, 4, 1, 1)
    torch.testing.assert_close(scaled_conv(conv, x, scale), conv(x) * scale, rtol=0, atol=1e-5)


def test_timestep_scalar_and_tensor(tiny_net):
    x = _input()
    with torch.no_grad():
        ref = tiny_net(x, 300.0).sample
        assert not torch.allclose(ref, x)  # the perturbed fixture is not the identity
        assert torch.equal(tiny_net(x, 300).sample, ref)
        assert torch.equal(tiny_net(x, torch.tensor(300.0)).sample, ref)
        # One value per image takes the general path (FiLM applied after the norm): equal up to float rounding.
        torch.testing.assert_close(tiny_net(x, torch.tensor([300.0, 300.0])).sample, ref, rtol=0, atol=1e-5)
        per_image = tiny_net(x, torch.tensor([300.0, 900.0])).sample
        torch.testing.assert_close(per_image[0], ref[0], rtol=0, atol=1e-5)
        assert not torch.allclose(per_image[1], ref[1])  # the timestep matters
        torch.testing.assert_close(per_image[1], tiny_net(x[1:], 900.0).sample[0])


def test_bad_timestep_shape(tiny_net):
    with pytest.raises(ValueError, match="timestep"):
        tiny_net(_input(n=2), torch.tensor([1.0, 2.0, 3.0]))


@pytest.mark.parametrize("size", [(12, 16), (16, 20), (7, 13)])
def test_wrong_size_names_the_multiple(tiny_net, size):
    with pytest.raises(ValueError, match=r"divisible by 8"):
        tiny_net(torch.rand(1, 3, *size), 1.0)


def test_bad_configs():
    with pytest.raises(ValueError, match="same length"):
        InDINet(encoder_blocks=(1, 1), decoder_blocks=(1,))
    with pytest.raises(ValueError, match="in_channels"):
        InDINet(in_channels=3, out_channels=1)


def test_save_load_round_trip_safetensors_only(tmp_path, tiny_net):
    tiny_net.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "diffusion_pytorch_model.safetensors"]
    loaded = InDINet.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, InDINet)
    assert list(loaded.config.encoder_blocks) == list(TINY_NET_KWARGS["encoder_blocks"])
    x = _input()
    with torch.no_grad():
        assert torch.equal(loaded(x, 700.0).sample, tiny_net(x, 700.0).sample)
    for name, param in tiny_net.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], param), name


def test_fp16_save_loads_as_float32(tmp_path):
    net = make_tiny_net(seed=3)
    reference = make_tiny_net(seed=3).half().float()  # what survives the fp16 round trip
    net.half().save_pretrained(tmp_path, variant=None)
    tensors = load_file(tmp_path / "diffusion_pytorch_model.safetensors")
    assert all(t.dtype == torch.float16 for t in tensors.values())
    loaded = InDINet.from_pretrained(tmp_path, torch_dtype=torch.float32).eval()
    assert loaded.dtype == torch.float32
    x = _input()
    with torch.no_grad():
        out = loaded(x, 500.0).sample
        assert out.dtype == torch.float32
        assert torch.isfinite(out).all()
        assert torch.equal(out, reference(x, 500.0).sample)
