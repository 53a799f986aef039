"""One model, many tasks: known frames and unmasked pixels come back exactly; masks; guidance; errors."""

import numpy as np
import pytest
import torch

from vidiff import VideoPipeline, tasks
from vidiff.cli import main
from vidiff.diffusion.guidance import decoded_reconstruction_guidance, reconstruction_guidance, replacement
from vidiff.diffusion.masks import conditioning_channels, frames_mask, random_training_masks
from vidiff.errors import ConfigError, VidiffError

TINY = ["data.num_frames=6", "data.size=16", "data.max_objects=1", "model.channels=8", "model.channel_mults=[1,2]",
        "model.spatial_attention_levels=[1]", "model.temporal_attention_levels=[1]", "model.head_dim=8",
        "model.spacetime_attention_levels=[]",  # the factorized pair of the older presets
        "model.patch_size=1", "diffusion.timesteps=50", "train.steps=3", "train.batch_size=2",
        "train.warmup_steps=1", "train.preview_steps=2", "train.time_budget_minutes=null",
        # v objective: a 3-step v network's x0 estimate at low noise is close to its input (x0 = a x_t - s v), which
        # the strength and guidance checks below rely on; a 3-step x0 network's estimate is just its random output.
        "diffusion.objective=v", "diffusion.noise_correlation=0", "train.init_from=null"]


@pytest.fixture(scope="module", params=["unconditional", "masked"])
def pipe(request, tmp_path_factory):
    run = tmp_path_factory.mktemp(request.param) / "run"
    extra = ["masks.enabled=true", "masks.max_context=3"] if request.param == "masked" else []
    assert main(["train", "demo", *TINY, *extra, "--out", str(run), "--quiet"]) == 0
    pipe = VideoPipeline.from_pretrained(run)
    # Give the zero-initialised output layer some weight so that outputs are not trivially zero.
    torch.manual_seed(0)
    torch.nn.init.normal_(pipe.denoiser.net.conv_out.spatial.weight, std=0.05)
    return pipe


def _video(frames=6, size=16, batch=1, seed=0):
    return torch.rand(batch, 3, frames, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_random_training_masks():
    m = random_training_masks(2000, 8, 0.3, 0.4, 0.3, 4, generator=torch.Generator().manual_seed(0))
    assert m.shape == (2000, 1, 8, 1, 1)
    flat = m[:, 0, :, 0, 0]
    none = flat.sum(1) == 0
    prediction = (flat[:, 0] == 1) & (flat[:, -1] == 0)
    assert abs(none.float().mean() - 0.3) < 0.05 and abs(prediction.float().mean() - 0.4) < 0.05
    assert (flat[prediction].sum(1) <= 4).all()  # at most max_context known frames
    # prediction masks are prefixes
    pm = flat[prediction]
    assert torch.equal(pm, pm.cummin(dim=1).values)
    cond = conditioning_channels(_video(8), frames_mask([0, 7], 8))
    assert cond.shape == (1, 4, 8, 16, 16) and cond[:, :3, 3].abs().sum() == 0 and cond[:, 3, 0].min() == 1


def test_masked_config_sets_the_conditioning_channels():
    from vidiff.build import build_denoiser
    from vidiff.config import load_config

    cfg = load_config(None, ["masks.enabled=true"])
    assert build_denoiser(cfg).net.config.cond_channels == 4
    with pytest.raises(ConfigError, match="cond_channels is set from masks.enabled"):
        load_config(None, ["masks.enabled=true", "model.cond_channels=4"])


@pytest.mark.parametrize("method", ["auto", "reconstruction", "replacement"])
def test_predict_keeps_the_context_exactly(pipe, method):
    ctx = _video(3)
    out = tasks.predict(pipe, ctx[0], 3, num_samples=2, method=method, num_steps=3,
                        generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 3, 6, 16, 16)
    assert torch.allclose(out[:, :, :3], ctx.expand(2, -1, -1, -1, -1), atol=1e-6)
    assert out[:, :, 3:].abs().max() <= 1
    chunked = tasks.predict(pipe, ctx[0], 3, num_samples=3, method=method, num_steps=2, batch_size=2)
    assert chunked.shape == (3, 3, 6, 16, 16) and torch.allclose(chunked[:, :, :3], ctx.expand(3, -1, -1, -1, -1))


def test_interpolate_keeps_keyframes_and_upsample_time(pipe):
    keys = _video(2)
    out = tasks.interpolate(pipe, keys, num_steps=3)
    assert out.shape == (1, 3, 6, 16, 16)
    assert torch.allclose(out[:, :, [0, 5]], keys, atol=1e-6)
    video = _video(4)
    up = tasks.upsample_time(pipe, video, factor=3, num_steps=2)
    assert up.shape == (1, 3, 10, 16, 16)
    assert torch.allclose(up[:, :, 0:10:3], video, atol=1e-6)


def test_extend_and_animate(pipe):
    out = tasks.extend(pipe, 15, num_samples=1, overlap=2, num_steps=2)
    assert out.shape == (1, 3, 15, 16, 16)
    start = _video(4)
    cont = tasks.extend(pipe, 12, start, overlap=2, num_steps=2)
    assert torch.allclose(cont[:, :, :4], start, atol=1e-6)
    image = _video(1)[0, :, 0]
    anim = tasks.animate(pipe, image, num_samples=2, num_steps=2)
    assert anim.shape == (2, 3, 6, 16, 16) and torch.allclose(anim[:, :, 0], image.expand(2, -1, -1, -1), atol=1e-6)


def test_inpaint_keeps_unmasked_pixels_exactly(pipe):
    video = _video(6)
    region = torch.zeros(6, 16, 16)
    region[1:4, 4:10, 2:12] = 1
    out = tasks.inpaint(pipe, video, region, num_steps=3)
    keep = (region == 0).expand(1, 3, 6, 16, 16)
    assert torch.equal(out[keep], video[keep])
    assert not torch.allclose(out[~keep], video[~keep])


def test_vary_strength(pipe):
    video = _video(6)
    g = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    weak = tasks.vary(pipe, video, 0.05, num_steps=4, generator=g())
    strong = tasks.vary(pipe, video, 1.0, num_steps=4, generator=g())
    assert (weak - video).abs().mean() < (strong - video).abs().mean()
    for s in (0, -0.1, 1.5):
        with pytest.raises(VidiffError, match=r"strength must be in \(0, 1\]"):
            tasks.vary(pipe, video, s)


def test_guidance_weight_zero_is_replacement():
    den = _AnalyticDenoiser()
    known, mask = _video(4, 8), frames_mask([0], 4)
    x = torch.randn(1, 3, 4, 8, 8)
    t = torch.tensor([30])
    a = replacement(den, known, mask, torch.Generator().manual_seed(3))(x, t)
    b = reconstruction_guidance(den, known, mask, 0.0, torch.Generator().manual_seed(3))(x, t)
    c = reconstruction_guidance(den, known, mask, 5.0, torch.Generator().manual_seed(3))(x, t)
    assert torch.allclose(a[0], b[0]) and torch.allclose(a[1], b[1], atol=1e-5)
    assert torch.equal(c[0][:, :, 0], known[:, :, 0])  # known frame exact
    assert not torch.allclose(c[0][:, :, 1:], a[0][:, :, 1:])  # guidance moved the unknown frames


def test_decoded_reconstruction_guidance_matches_its_formula():
    """With a linear network x0(z) = c z and a decoder that doubles each latent frame, the guided estimate is
    x0 + w sqrt(a) c D^T(m (known - D x0)) (the gradient of the squared error, by hand)."""
    from vidiff.diffusion import make_alphas_cumprod

    c, w = 0.5, 3.0
    ac = make_alphas_cumprod("cosine", 50)

    def den(x, t):
        return c * x, torch.zeros_like(x)

    den.alphas_cumprod = ac
    decode = lambda z: z.repeat_interleave(2, dim=2)  # noqa: E731  (B, C, F, H, W) -> (B, C, 2F, H, W)
    z, known = torch.randn(1, 3, 2, 4, 4), torch.randn(1, 3, 4, 4, 4)
    mask = frames_mask([0, 3], 4)
    t = torch.tensor([20])
    x0, eps = decoded_reconstruction_guidance(den, decode, known, mask, w)(z, t)
    r = mask * (known - decode(c * z))  # (1, 3, 4, 4, 4)
    back = r[:, :, 0::2] + r[:, :, 1::2]  # D^T: each latent frame gathers its two pixel frames
    expected = c * z + w * ac[20].sqrt() * c * back
    torch.testing.assert_close(x0, expected)
    torch.testing.assert_close(eps, (z - ac[20].sqrt() * x0) / (1 - ac[20]).sqrt())


class _AnalyticDenoiser:
    """x0_hat = temporal mean of x_t / sqrt(a): couples frames, so guidance has something to push."""

    def __init__(self):
        from vidiff.diffusion import make_alphas_cumprod

        self.alphas_cumprod = make_alphas_cumprod("cosine", 50)

    def __call__(self, x, t, cond=None):
        a = self.alphas_cumprod[t].float().reshape(-1, 1, 1, 1, 1)
        x0 = (x / a.sqrt()).mean(dim=2, keepdim=True).expand_as(x).clamp(-1, 1)
        return x0, (x - a.sqrt() * x0) / (1 - a).sqrt()


def test_bad_inputs_give_clear_errors(pipe):
    with pytest.raises(VidiffError, match="context of 6 frames is as long as the model's 6-frame clips"):
        tasks.predict(pipe, _video(6), 2)
    with pytest.raises(VidiffError, match="mask of shape"):
        tasks.inpaint(pipe, _video(6), torch.zeros(5, 16, 16))
    with pytest.raises(VidiffError, match="keyframe positions must lie in"):
        tasks.interpolate(pipe, _video(2), positions=[0, 9])
    with pytest.warns(UserWarning, match="resizing"):
        out = tasks.predict(pipe, _video(2, size=24), 1, num_steps=2)
    assert out.shape[-2:] == (16, 16)


def test_task_cli_end_to_end(pipe, tmp_path):
    from vidiff.io import write_image, write_video

    video = ((_video(6)[0] + 1) * 127.5).round().byte().permute(1, 2, 3, 0).numpy()
    write_video(tmp_path / "in.gif", video)
    write_image(tmp_path / "a.png", video[0])
    write_image(tmp_path / "b.png", video[5])
    run = str(pipe.run_dir)
    ok = lambda *a: main([*a, "--out", str(tmp_path / a[0]), "--steps", "2", "--quiet"]) == 0  # noqa: E731
    assert ok("predict", run, "--input", str(tmp_path / "in.gif"), "--context", "2", "--num", "2")
    assert np.load(tmp_path / "predict" / "samples.npy").shape == (2, 6, 16, 16, 3)
    assert ok("interpolate", run, "--input", str(tmp_path / "a.png"), str(tmp_path / "b.png"))
    assert ok("interpolate", run, "--input", str(tmp_path / "in.gif"), "--factor", "2")
    assert np.load(tmp_path / "interpolate" / "samples.npy").shape == (1, 11, 16, 16, 3)
    assert ok("animate", run, "--image", str(tmp_path / "a.png"))
    assert ok("inpaint", run, "--input", str(tmp_path / "in.gif"), "--box", "2,2,10,10,1,4")
    assert ok("vary", run, "--input", str(tmp_path / "in.gif"), "--strength", "0.3")
    assert ok("extend", run, "--frames", "10")
    assert np.load(tmp_path / "extend" / "samples.npy").shape == (1, 10, 16, 16, 3)
    assert main(["inpaint", run, "--input", str(tmp_path / "in.gif"), "--box", "1,2,3", "--out", str(tmp_path)]) == 2
    assert main(["vary", run, "--input", str(tmp_path / "in.gif"), "--strength", "2", "--out", str(tmp_path)]) == 2


def test_clean_context_gives_the_known_frames_clean_at_level_zero_and_keeps_them():
    from vidiff.diffusion import Denoiser
    from vidiff.diffusion.guidance import classifier_free_guidance, clean_context
    from vidiff.diffusion.masks import frames_mask

    seen = []

    def net(x, c, cond=None, x_self=None, labels=None):
        seen.append((x.clone(), c.clone(), None if labels is None else labels.clone()))
        return torch.tanh(x)  # an x0 estimate that depends on the input

    den = Denoiser(net, objective="x0", timesteps=100)
    den.net.config = type("C", (), {"num_labels": 4, "self_condition": False})()
    known = torch.rand(2, 3, 5, 4, 4) * 2 - 1
    mask = frames_mask([0, 1], 5)  # (1, 1, 5, 1, 1): the first two frames given
    x_t, t = torch.randn(2, 3, 5, 4, 4), torch.tensor([70, 70])
    x0, eps = clean_context(den, known, mask)(x_t, t)
    x_in, c, _ = seen[-1]
    torch.testing.assert_close(x_in[:, :, :2], known[:, :, :2])  # given clean ...
    torch.testing.assert_close(x_in[:, :, 2:], x_t[:, :, 2:])  # ... the others as the sampler has them
    assert c.tolist() == [[0, 0, 70, 70, 70]] * 2  # level 0 at the given frames, the sampler's elsewhere
    torch.testing.assert_close(x0[:, :, :2], known[:, :, :2])  # the given frames come back exactly
    torch.testing.assert_close(x0[:, :, 2:], torch.tanh(x_t[:, :, 2:]))
    a = den.alphas_cumprod[70]
    torch.testing.assert_close(a.sqrt() * x0 + (1 - a).sqrt() * eps, x_t, atol=1e-5, rtol=1e-5)  # eps fits x0 at t
    # under classifier-free guidance (conditional and unconditional passes stacked in one batch) the known frames
    # are repeated to match, and each pass gets its labels
    labels = torch.tensor([[0, 1], [2, -1]])
    x0g, _ = classifier_free_guidance(clean_context(den, known, mask), labels, 2.0)(x_t, t)
    x_in, c, lab = seen[-1]
    assert x_in.shape[0] == 4 and c.shape == (4, 5) and lab.tolist() == labels.tolist() + [[-1, -1]] * 2
    torch.testing.assert_close(x_in[2:, :, :2], known[:, :, :2])
    torch.testing.assert_close(x0g[:, :, :2], known[:, :, :2])


def test_clean_context_masks_are_prefixes_of_the_clip():
    from vidiff.diffusion.masks import clean_context_mask

    g = torch.Generator().manual_seed(0)
    m = clean_context_mask(4000, 6, 0.5, 3, generator=g)  # (B, 1, F, 1, 1)
    assert m.shape == (4000, 1, 6, 1, 1)
    k = m[:, 0, :, 0, 0].sum(1)
    frames = m[:, 0, :, 0, 0]
    assert torch.equal(frames, (torch.arange(6)[None] < k[:, None]).float())  # the first k frames, nothing else
    assert abs((k > 0).float().mean().item() - 0.5) < 0.03 and set(k.unique().tolist()) == {0, 1, 2, 3}
    assert not clean_context_mask(8, 6, 0.0, 3, generator=g).any()


def test_a_clean_context_model_continues_its_first_frames_given_clean(tmp_path):
    run = tmp_path / "clean"
    assert main(["train", "demo", *TINY, "diffusion.clean_context=0.5", "diffusion.clean_context_frames=2",
                 "--out", str(run), "--quiet"]) == 0
    cpipe = VideoPipeline.from_pretrained(run)
    levels = []
    net = cpipe.denoiser.net
    hook = net.register_forward_pre_hook(lambda mod, args: levels.append(args[1].clone()))
    ctx = _video(2)
    out = tasks.predict(cpipe, ctx[0], 4, num_samples=2, num_steps=3, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 3, 6, 16, 16) and torch.allclose(out[:, :, :2], ctx.expand(2, -1, -1, -1, -1), atol=1e-6)
    assert levels and all(c.shape == (2, 6) and (c[:, :2] == 0).all() and (c[:, 2:] > 0).all() for c in levels)
    levels.clear()  # keyframes at both ends are not what it was trained on: auto falls back to reconstruction
    tasks.interpolate(cpipe, _video(2), num_steps=2)
    assert levels and all(c.ndim == 1 for c in levels)
    levels.clear()  # three context frames are more than it saw (clean_context_frames=2): reconstruction as well
    tasks.predict(cpipe, _video(3)[0], 3, num_steps=2)
    assert levels and all(c.ndim == 1 for c in levels)
    hook.remove()
    region = torch.zeros(6, 16, 16)
    region[:, 4:8, 4:8] = 1
    with pytest.raises(VidiffError, match="clean context conditions on whole frames"):
        tasks.inpaint(cpipe, _video(6), region, method="clean", num_steps=2)
    cpipe.config.diffusion.clean_context = 0.0  # as a model trained without it
    with pytest.raises(VidiffError, match="trained without clean context frames"):
        tasks.predict(cpipe, ctx[0], 2, method="clean", num_steps=2)
