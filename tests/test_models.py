"""Shapes of every block, and properties the architecture promises."""

import pytest
import torch

from vidiff.config import ModelConfig
from vidiff.models import PRESETS, VideoUNet, preset
from vidiff.models.layers import (Downsample, ResBlock, SpaceTimeAttention, SpaceTimeConv, SpatialAttention,
                                  TemporalAttention, Upsample, rotary, timestep_embedding)

B, C, F, H, W = 2, 8, 5, 8, 8


@pytest.mark.parametrize("mode", ["factorized", "full", "none"])
def test_space_time_conv_shapes(mode):
    conv = SpaceTimeConv(C, 12, mode)
    assert conv(torch.randn(B, C, F, H, W)).shape == (B, 12, F, H, W)
    kernels = [m.kernel_size for m in conv.modules() if isinstance(m, torch.nn.Conv3d)]
    assert kernels == {"factorized": [(1, 3, 3), (3, 1, 1)], "full": [(3, 3, 3)], "none": [(1, 3, 3)]}[mode]


def test_factorized_conv_mixes_frames_only_through_the_temporal_conv():
    conv = SpaceTimeConv(C, C, "none")
    x = torch.randn(1, C, F, H, W)
    y = x.clone()
    y[:, :, 0] += 1  # change frame 0 only
    assert torch.allclose(conv(x)[:, :, 1:], conv(y)[:, :, 1:])  # a spatial conv never looks at other frames
    conv = SpaceTimeConv(C, C, "factorized")
    assert not torch.allclose(conv(x)[:, :, 1], conv(y)[:, :, 1])  # the temporal tap reaches frame 1


def test_resblock_and_attention_shapes():
    emb = torch.randn(B, 32)
    x = torch.randn(B, C, F, H, W)
    assert ResBlock(C, 16, 32)(x, emb).shape == (B, 16, F, H, W)
    assert SpatialAttention(C, 4)(x).shape == x.shape
    assert TemporalAttention(C, 4)(x).shape == x.shape
    assert Downsample(C)(x).shape == (B, C, F, H // 2, W // 2)
    assert Upsample(C)(x).shape == (B, C, F, 2 * H, 2 * W)
    assert timestep_embedding(torch.tensor([0.0, 999.0]), 33).shape == (2, 33)


def test_new_residual_branches_start_as_identity():
    x = torch.randn(B, C, F, H, W)
    assert torch.equal(SpatialAttention(C, 4)(x), x)
    assert torch.equal(TemporalAttention(C, 4)(x), x)
    assert torch.equal(ResBlock(C, C, 16)(x, torch.randn(B, 16)), x)


def test_rotary_scores_depend_only_on_relative_position():
    torch.manual_seed(0)
    q, k = torch.randn(1, 16), torch.randn(1, 16)
    def score(i, j):
        return (rotary(q, torch.tensor([i])) * rotary(k, torch.tensor([j]))).sum()
    assert torch.allclose(score(3, 1), score(10, 8), atol=1e-5)
    assert not torch.allclose(score(3, 1), score(3, 2), atol=1e-3)


def test_temporal_attention_sees_other_frames_and_spatial_does_not():
    torch.manual_seed(0)
    x = torch.randn(1, C, F, H, W)
    y = x.clone()
    y[:, :, 0] += 1
    sa, ta = SpatialAttention(C, 4), TemporalAttention(C, 4)
    for m in (sa, ta):
        torch.nn.init.normal_(m.proj.weight)
        m.norm = torch.nn.Identity()  # GroupNorm statistics span the clip; test the attention pattern itself
    assert torch.allclose(sa(x)[:, :, 1:], sa(y)[:, :, 1:], atol=1e-6)
    assert not torch.allclose(ta(x)[:, :, 1:], ta(y)[:, :, 1:], atol=1e-3)


def test_spacetime_attention_links_other_places_in_other_frames():
    torch.manual_seed(0)
    st, ta = SpaceTimeAttention(C, 4), TemporalAttention(C, 4)
    for m in (st, ta):
        torch.nn.init.normal_(m.proj.weight)
        m.norm = torch.nn.Identity()
    x = torch.randn(1, C, F, H, W)
    assert torch.equal(SpaceTimeAttention(C, 4)(x), x)  # a new block starts as the identity
    y = x.clone()
    y[:, :, 0, 0, 0] += 1  # one pixel of the first frame
    # frame 3 at another pixel: reached in one hop by full attention, not by temporal attention
    assert not torch.allclose(st(x)[:, :, 3, 5, 5], st(y)[:, :, 3, 5, 5], atol=1e-4)
    assert torch.allclose(ta(x)[:, :, 3, 5, 5], ta(y)[:, :, 3, 5, 5], atol=1e-6)


def test_rope_frame_scale_zero_makes_spacetime_attention_blind_to_frame_order():
    torch.manual_seed(0)
    x = torch.randn(1, C, F, H, W)
    perm = torch.randperm(F)
    for scale, blind in ((0.0, True), (1.0, False), (0.1, False)):
        st = SpaceTimeAttention(C, 4, frame_scale=scale)
        torch.nn.init.normal_(st.proj.weight)
        same = torch.allclose(st(x[:, :, perm]), st(x)[:, :, perm], atol=1e-5)
        assert same == blind, scale  # permuting the frames permutes the output only without frame positions
    one = torch.randn(1, C, 1, H, W)  # a one-frame clip (an image model) does not see the scale
    a, b = SpaceTimeAttention(C, 4, frame_scale=0.0), SpaceTimeAttention(C, 4, frame_scale=1.0)
    torch.nn.init.normal_(a.proj.weight)
    b.load_state_dict(a.state_dict())
    assert torch.equal(a(one), b(one))


def test_axial_rotary_scores_depend_on_relative_position_in_every_axis():
    from vidiff.models.layers import rotary_axes
    torch.manual_seed(0)
    q, k = torch.randn(2, 1, 16)  # one query and one key, D = 16

    def score(pq, pk):
        pos = torch.tensor([pq, pk])  # (2, 3) = (frame, row, column)
        x = rotary_axes(torch.cat([q, k]), pos)
        return (x[0] * x[1]).sum()

    base = score([2, 1, 3], [5, 4, 0])
    assert torch.allclose(base, score([7, 3, 4], [10, 6, 1]), atol=1e-5)  # the same offset elsewhere
    for axis in range(3):  # a different offset along any one axis changes the score
        moved = [5, 4, 0]
        moved[axis] += 1
        assert not torch.allclose(base, score([2, 1, 3], moved), atol=1e-3)


@pytest.mark.parametrize("cfg", [
    ModelConfig(channels=8, channel_mults=(1, 2), spatial_attention_levels=(1,), temporal_attention_levels=(0, 1), head_dim=8),
    ModelConfig(channels=8, channel_mults=(1, 2, 2), blocks_per_level=2, temporal_conv="full", head_dim=8),
    ModelConfig(channels=8, channel_mults=(1, 2), patch_size=2, temporal_conv="none", head_dim=4),
    ModelConfig(channels=8, channel_mults=(1, 2), temporal_attention_levels=(0,), spacetime_attention_levels=(1,),
                head_dim=8),
    ModelConfig(channels=8, channel_mults=(1, 2, 2), temporal_downsample_levels=(0,), spacetime_attention_levels=(1, 2),
                temporal_attention_levels=(0,), head_dim=8),
    ModelConfig(channels=8, channel_mults=(1,), spatial_attention_levels=(0,), temporal_attention_levels=(0,), head_dim=8,
                cond_channels=4),
    ModelConfig(channels=8, channel_mults=(1, 2), patch_size=2, head_dim=8, self_condition=True, cond_channels=4),
    ModelConfig(channels=8, channel_mults=(1, 2), patch_size=4, head_dim=8, self_condition=True, pixel_channels=4),
    ModelConfig(channels=8, channel_mults=(1, 2), patch_size=4, head_dim=8, pixel_channels=4, pixel_blocks=3),
])
def test_unet_output_matches_input_shape(cfg):
    net = VideoUNet(cfg)
    x = torch.randn(2, 3, 6, 16, 16)
    cond = torch.randn(2, cfg.cond_channels, 6, 16, 16) if cfg.cond_channels else None
    out = net(x, torch.tensor([3.0, 700.0]), cond)
    assert out.shape == x.shape
    # Output layers start at zero, so a fresh model predicts 0 whatever the input.
    assert out.abs().max() == 0
    # and gradients reach the first layer(s) once the output layer moves
    torch.nn.init.normal_((net.pixel_out if cfg.pixel_channels else net.conv_out.spatial).weight, std=0.1)
    net(x, torch.tensor([3.0, 700.0]), cond).pow(2).mean().backward()
    assert net.conv_in.spatial.weight.grad.abs().sum() > 0
    if cfg.pixel_channels:
        assert net.pixel_in.weight.grad.abs().sum() > 0


def test_more_pixel_blocks_start_as_the_identity():
    # A run with model.pixel_blocks=2 initialised from a trained model with one block computes what that model did,
    # and the new block then learns (its last conv is the zero one).
    from vidiff.training.checkpoint import init_from_weights

    torch.manual_seed(0)
    cfg = ModelConfig(channels=8, channel_mults=(1, 2), patch_size=4, head_dim=8, pixel_channels=4)
    old = VideoUNet(cfg)
    for p in old.parameters():  # a "trained" model: nothing zero
        torch.nn.init.normal_(p, std=0.2)
    new = VideoUNet(ModelConfig(**{**cfg.__dict__, "pixel_blocks": 2}))
    fresh = init_from_weights(new, old.state_dict(), "test")
    assert fresh and all(k.startswith("pixel_more.0.") for k in fresh)
    x, t = torch.randn(1, 3, 2, 16, 16), torch.tensor([200.0])
    with torch.no_grad():
        torch.testing.assert_close(new(x, t), old(x, t))
    new(x, t).pow(2).mean().backward()
    assert new.pixel_more[0].conv2.spatial.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("blocks", [1, 2])
def test_widened_head_computes_what_the_narrow_one_did(blocks):
    # bench/widen_head.py: 4 -> 8 pixel channels (GroupNorm keeps 4 per group), the same output, and the new
    # channels then learn.
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "widen_head.py"
    spec = importlib.util.spec_from_file_location("widen_head", path)
    widen_head = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(widen_head)
    torch.manual_seed(0)
    cfg = ModelConfig(channels=8, channel_mults=(1, 2), patch_size=4, head_dim=8, pixel_channels=4,
                      pixel_blocks=blocks, num_labels=5, self_condition=True)
    old = VideoUNet(cfg)
    for p in old.parameters():
        torch.nn.init.normal_(p, std=0.2)
    new = VideoUNet(ModelConfig(**{**cfg.__dict__, "pixel_channels": 8}))
    new.load_state_dict(widen_head.widen(old.state_dict(), new.state_dict(), 4, 8))
    x, t, labels = torch.randn(2, 3, 2, 16, 16), torch.tensor([200.0, 700.0]), torch.tensor([[0, 3], [2, -1]])
    x_self = torch.randn_like(x)
    with torch.no_grad():
        torch.testing.assert_close(new(x, t, None, x_self, labels), old(x, t, None, x_self, labels))
    new(x, t, None, x_self, labels).pow(2).mean().backward()
    assert new.pixel_out.weight.grad[:, 4:].abs().sum() > 0  # the zeroed weights from the new channels move


def test_self_conditioning_input_is_seen_and_defaults_to_zeros():
    torch.manual_seed(0)
    net = VideoUNet(ModelConfig(channels=8, channel_mults=(1, 2), head_dim=8, self_condition=True))
    torch.nn.init.normal_(net.conv_out.spatial.weight, std=0.1)
    x, t = torch.randn(1, 3, 4, 8, 8), torch.tensor([100.0])
    zeros = net(x, t, None, torch.zeros_like(x))
    assert torch.equal(net(x, t), zeros)  # no estimate = an all-zero one (the first sampling step)
    assert not torch.allclose(net(x, t, None, torch.randn_like(x)), zeros, atol=1e-4)


def test_unet_runs_on_other_clip_lengths_and_64px():
    net = VideoUNet(preset("tiny"))
    assert net(torch.randn(1, 3, 9, 64, 64), torch.tensor([10.0])).shape == (1, 3, 9, 64, 64)


def test_unet_rejects_indivisible_sizes():
    net = VideoUNet(preset("tiny", patch_size=2))
    with pytest.raises(ValueError, match="divisible by 4"):
        net(torch.randn(1, 3, 4, 18, 18), torch.tensor([1.0]))


def test_temporal_downsampling_halves_frames_and_needs_an_even_count():
    cfg = ModelConfig(channels=8, channel_mults=(1, 2, 2), temporal_downsample_levels=(0, 1), head_dim=8)
    net = VideoUNet(cfg)
    seen = []
    net.mid1.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    assert net(torch.randn(1, 3, 8, 16, 16), torch.tensor([1.0])).shape == (1, 3, 8, 16, 16)
    assert seen[0][2:] == (2, 4, 4)  # frames 8 -> 2 and pixels 16 -> 4 at the bottom
    with pytest.raises(ValueError, match="divisible by 4, got 6"):
        net(torch.randn(1, 3, 6, 16, 16), torch.tensor([1.0]))


def test_presets_build():
    assert {"tiny", "small", "base"} <= set(PRESETS)
    assert VideoUNet(preset("tiny")).num_parameters() < 100_000
    with pytest.raises(KeyError, match="unknown model preset"):
        preset("huge")


@pytest.mark.parametrize("temporal_conv,temporal_init,pixel_channels", [
    ("factorized", "random", 0), ("factorized", "identity", 0), ("full", "random", 0), ("none", "random", 0),
    ("factorized", "random", 4)])
def test_every_weight_learns(temporal_conv, temporal_init, pixel_channels):
    # Zero-initialised layers must not starve each other: after a few optimizer steps every weight
    # gets a gradient (a residual branch with both of its (2+1)D convs at zero never would).
    torch.manual_seed(0)
    cfg = ModelConfig(channels=8, channel_mults=(1, 2, 2), spatial_attention_levels=(1,),
                      temporal_attention_levels=(0, 1), spacetime_attention_levels=(2,), head_dim=8,
                      temporal_conv=temporal_conv, temporal_init=temporal_init, cond_channels=4,
                      pixel_channels=pixel_channels, patch_size=2 if pixel_channels else 1)
    net = VideoUNet(cfg)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    x, cond, t = torch.randn(2, 3, 4, 8, 8), torch.randn(2, 4, 4, 8, 8), torch.tensor([5.0, 500.0])
    for _ in range(3):
        opt.zero_grad()
        (net(x, t, cond) - x).pow(2).mean().backward()
        opt.step()
    dead = [name for name, p in net.named_parameters() if p.ndim > 1 and not p.grad.abs().sum() > 0]
    assert not dead, dead


def test_identity_temporal_init_starts_as_a_per_frame_image_model():
    # With temporal_init="identity" the (2+1)D conv is, at initialisation, the spatial conv alone: every output
    # frame depends on its own input frame only; the temporal taps then learn motion from there.
    torch.manual_seed(0)
    conv = SpaceTimeConv(3, 8, "factorized", identity_init=True)
    x = torch.randn(2, 3, 5, 6, 6)  # (B, C, F, H, W)
    torch.testing.assert_close(conv(x), conv.spatial(x))
    x2 = x.clone()
    x2[:, :, 0] += 1.0  # change frame 0 only
    assert torch.equal(conv(x2)[:, :, 1:], conv(x)[:, :, 1:])
    random = SpaceTimeConv(3, 8, "factorized")
    assert not torch.equal(random(x2)[:, :, 1], random(x)[:, :, 1])  # the default init mixes neighbouring frames


@pytest.mark.parametrize("mode", ["factorized", "full"])
def test_replicate_temporal_padding_sees_the_edge_frame_beyond_the_clip(mode):
    # With replicate padding a clip that does not change over time gives the same output in every frame, the end
    # frames included; zero padding makes the end frames differ from the middle ones. The weights are the same.
    torch.manual_seed(0)
    zeros = SpaceTimeConv(C, 6, mode)
    rep = SpaceTimeConv(C, 6, mode, temporal_padding="replicate")
    rep.load_state_dict(zeros.state_dict())
    still = torch.randn(1, C, 1, H, W).expand(1, C, F, H, W)  # (B, C, F, H, W), the same frame F times
    out = rep(still)
    assert out.shape == (1, 6, F, H, W)
    torch.testing.assert_close(out, out[:, :, :1].expand_as(out))
    assert not torch.allclose(zeros(still)[:, :, 0], zeros(still)[:, :, 2])
    # inside the clip both paddings agree
    x = torch.randn(B, C, F, H, W)
    torch.testing.assert_close(rep(x)[:, :, 1:-1], zeros(x)[:, :, 1:-1])
    # and a U-Net takes the option from its config (weights of the same names and shapes)
    cfg = dict(channels=8, channel_mults=(1, 2), spatial_attention_levels=(), temporal_attention_levels=(1,), head_dim=8)
    a, b = VideoUNet(ModelConfig(**cfg)), VideoUNet(ModelConfig(**cfg, temporal_padding="replicate"))
    assert a.state_dict().keys() == b.state_dict().keys()


def test_one_noise_level_per_frame_conditions_each_frame_on_its_own():
    from vidiff.models.layers import frame_modulation

    m = torch.arange(24.0).reshape(1, 4, 6)  # (B, F0, C)
    assert frame_modulation(m[:, 0], 4).shape == (1, 6, 1, 1, 1)
    torch.testing.assert_close(frame_modulation(m, 4)[0, :, :, 0, 0], m[0].T)  # (C, F)
    torch.testing.assert_close(frame_modulation(m, 2)[0, :, :, 0, 0], (m[0, 0::2] + m[0, 1::2]).T / 2)  # halved frames
    torch.manual_seed(0)
    for cfg in (ModelConfig(channels=8, channel_mults=(1, 2), head_dim=8, patch_size=2, pixel_channels=4, num_labels=5),
                ModelConfig(channels=8, channel_mults=(1, 2, 2), temporal_downsample_levels=(0,), head_dim=8)):
        net = VideoUNet(cfg)
        for p in net.parameters():  # every layer active, output layers included
            torch.nn.init.normal_(p, std=0.2)
        x, t = torch.randn(2, 3, 4, 16, 16), torch.tensor([30.0, 600.0])
        labels = torch.tensor([[1, -1], [2, 4]]) if cfg.num_labels else None
        same = net(x, t[:, None].expand(2, 4), labels=labels)  # (B, F) timesteps, all equal: the per-clip result
        torch.testing.assert_close(same, net(x, t, labels=labels), atol=1e-5, rtol=1e-5)
        t_frames = t[:, None].repeat(1, 4)
        t_frames[:, 3] = 999.0  # one frame much noisier than the others
        assert not torch.allclose(net(x, t_frames, labels=labels), same, atol=1e-3)


def test_the_dit_refuses_a_noise_level_per_frame():
    from vidiff.models.dit import VideoDiT

    net = VideoDiT(ModelConfig(architecture="dit", channels=16, depth=1, head_dim=8, patch_size=2, pixel_channels=0))
    with pytest.raises(ValueError, match="one noise level per clip"):
        net(torch.randn(1, 3, 2, 8, 8), torch.tensor([[1.0, 2.0]]))
