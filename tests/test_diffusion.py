"""Schedules and sampler steps against an independent reference: diffusers' DDPMScheduler / DDIMScheduler /
DPMSolverMultistepScheduler."""

import pytest
import torch

from vidiff.diffusion import (Denoiser, Objective, ddim_step, ddpm_step, make_alphas_cumprod, q_sample,
                              sampling_timesteps, to_x0_eps, training_target)
from vidiff.diffusion.samplers import sample

diffusers = pytest.importorskip("diffusers")

DIFFUSERS_SCHEDULE = {"linear": "linear", "cosine": "squaredcos_cap_v2"}
PREDICTION_TYPE = {"eps": "epsilon", "v": "v_prediction", "x0": "sample"}


def _scheduler(cls, schedule, objective, T=1000, **kw):
    if cls is not diffusers.DPMSolverMultistepScheduler:  # (which never clips: it has no such option)
        kw["clip_sample"] = False
    sch = cls(num_train_timesteps=T, beta_schedule=DIFFUSERS_SCHEDULE[schedule],
              prediction_type=PREDICTION_TYPE[objective], **kw)
    # Same betas, held in float64 on both sides: the comparison is of the step algebra, not of
    # float32 rounding (near t = 0, 1 - alpha_bar in float32 loses ~4 digits in diffusers' tables).
    sch.betas, sch.alphas, sch.alphas_cumprod = sch.betas.double(), sch.alphas.double(), sch.alphas_cumprod.double()
    return sch


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("T", [1000, 250])
def test_alphas_cumprod_match_diffusers(schedule, T):
    # Our linear schedule rescales Ho et al.'s betas for T != 1000 (as improved-diffusion does).
    scale = 1000 / T
    ref = _scheduler(diffusers.DDPMScheduler, schedule, "eps", T=T, beta_start=scale * 1e-4,
                     beta_end=scale * 0.02).alphas_cumprod.double()
    ours = make_alphas_cumprod(schedule, T)
    assert torch.allclose(ours, ref, atol=1e-6, rtol=1e-5)


def _pred(objective, x0, eps, a):
    return training_target(Objective(objective), x0, eps, a.expand(x0.shape[0]))


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("objective", ["eps", "v", "x0"])
@pytest.mark.parametrize("t,t_prev", [(999, 979), (500, 480), (20, 0), (0, -1)])
def test_ddim_step_matches_diffusers(schedule, objective, t, t_prev):
    T, n = 1000, 50
    sch = _scheduler(diffusers.DDIMScheduler, schedule, objective, timestep_spacing="trailing")
    sch.set_timesteps(n)
    assert t - T // n == t_prev or t == 0  # diffusers' step goes from t to t - T/n
    g = torch.Generator().manual_seed(t)
    x_t = torch.randn(2, 3, 4, 8, 8, generator=g)
    model_out = torch.randn(2, 3, 4, 8, 8, generator=g)
    noise = torch.randn(2, 3, 4, 8, 8, generator=g)
    a = sch.alphas_cumprod.double()
    a_t = a[t]
    a_prev = a[t_prev] if t_prev >= 0 else torch.tensor(1.0, dtype=torch.float64)
    x0, eps = to_x0_eps(Objective(objective), model_out, x_t, a_t.float().expand(2))
    for eta in (0.0, 0.7):
        if t == 0:
            continue  # diffusers computes prev = -20 for t=0 with n=50; covered by (20, 0) and (0, -1) below
        ref = sch.step(model_out, t, x_t, eta=eta, variance_noise=noise).prev_sample
        ours = ddim_step(x_t, x0, eps, a_t, a_prev, eta=eta, noise=noise)
        assert torch.allclose(ours, ref, atol=1e-5), (eta, (ours - ref).abs().max())
    if t == 0:  # the last step returns the x0 estimate
        assert torch.allclose(ddim_step(x_t, x0, eps, a_t, a_prev), x0, atol=1e-5)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("objective", ["eps", "v", "x0"])
@pytest.mark.parametrize("num_steps,t", [(1000, 999), (1000, 400), (1000, 1), (1000, 0), (50, 500)])
def test_ddpm_step_matches_diffusers(schedule, objective, num_steps, t):
    T = 1000
    sch = _scheduler(diffusers.DDPMScheduler, schedule, objective, variance_type="fixed_small")
    sch.set_timesteps(num_steps)
    t_prev = t - T // num_steps
    g = torch.Generator().manual_seed(1000 + t)
    x_t = torch.randn(2, 3, 4, 8, 8, generator=g)
    model_out = torch.randn(2, 3, 4, 8, 8, generator=g)
    a = sch.alphas_cumprod.double()
    a_t = a[t]
    a_prev = a[t_prev] if t_prev >= 0 else torch.tensor(1.0, dtype=torch.float64)
    ref = sch.step(model_out, t, x_t, generator=torch.Generator().manual_seed(7)).prev_sample
    noise = torch.randn(x_t.shape, generator=torch.Generator().manual_seed(7)) if t > 0 else None
    x0, _ = to_x0_eps(Objective(objective), model_out, x_t, a_t.float().expand(2))
    ours = ddpm_step(x_t, x0, a_t, a_prev, noise)
    assert torch.allclose(ours, ref, atol=1e-5), (ours - ref).abs().max()


@pytest.mark.parametrize("spacing", ["trailing", "leading"])
@pytest.mark.parametrize("n", [1, 10, 50, 1000])
def test_timesteps_match_diffusers(spacing, n):
    sch = diffusers.DDIMScheduler(num_train_timesteps=1000, timestep_spacing=spacing)
    sch.set_timesteps(n)
    assert sampling_timesteps(1000, n, spacing) == sch.timesteps.tolist()


def test_full_ddim_loop_matches_diffusers():
    """A whole 20-step DDIM trajectory with a fixed analytic 'network' agrees with diffusers end to end."""
    sch = _scheduler(diffusers.DDIMScheduler, "cosine", "v", timestep_spacing="trailing")
    sch.set_timesteps(20)
    net = lambda x, t, cond=None: 0.5 * x + 0.01 * t[:, None, None, None, None] / 1000  # noqa: E731
    den = Denoiser(net, "cosine", 1000, "v")
    x_T = torch.randn(1, 3, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    x = x_T.clone()
    for t in sch.timesteps:
        out = net(x, t.float().reshape(1))
        x = sch.step(out, t, x).prev_sample
    ours = sample(den, x_T.shape, den.alphas_cumprod, "ddim", 20, x_T=x_T.clone(), clip_x0=False)
    assert torch.allclose(ours, x, atol=1e-4), (ours - x).abs().max()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # (diffusers' own numpy call in set_timesteps)
@pytest.mark.parametrize("sde", [False, True])
@pytest.mark.parametrize("objective", ["v", "x0"])
@pytest.mark.parametrize("n", [20, 10])
def test_full_dpmpp_2m_loop_matches_diffusers(sde, objective, n):
    """A whole DPM-Solver++(2M) trajectory (and its SDE form, with the same noise fed to both) with a fixed analytic
    'network' agrees with diffusers' DPMSolverMultistepScheduler: first order at the first step and at the last,
    second order (midpoint form) between."""
    from vidiff.diffusion.schedules import video_noise

    sch = _scheduler(diffusers.DPMSolverMultistepScheduler, "cosine", objective, solver_order=2,
                     algorithm_type="sde-dpmsolver++" if sde else "dpmsolver++", final_sigmas_type="zero")
    timesteps = sampling_timesteps(1000, n)
    sch.set_timesteps(timesteps=timesteps)
    a = sch.alphas_cumprod.double()  # diffusers keeps its sigmas in float32: the same ones in float64
    sch.sigmas = torch.cat([((1 - a[timesteps]) / a[timesteps]).sqrt(), torch.zeros(1, dtype=torch.float64)])
    net = lambda x, t, cond=None: 0.5 * x.tanh() + 0.2 * t[:, None, None, None, None] / 1000  # noqa: E731
    den = Denoiser(net, "cosine", 1000, objective)
    x_T = torch.randn(1, 3, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    noise_gen = torch.Generator().manual_seed(5)
    x = x_T.clone().double()
    for i, t in enumerate(sch.timesteps):
        noise = video_noise(x.shape, 0.0, noise_gen).double() if sde and i < n - 1 else None
        x = sch.step(net(x.float(), t.float().reshape(1)).double(), t, x, variance_noise=noise).prev_sample
    name = "dpmpp-2m-sde" if sde else "dpmpp-2m"
    ours = sample(den, x_T.shape, den.alphas_cumprod, name, n, x_T=x_T.clone(), clip_x0=False,
                  generator=torch.Generator().manual_seed(5))
    assert torch.allclose(ours.double(), x, atol=1e-5), (ours - x).abs().max()


def test_every_sampler_is_offered_by_the_command_line():
    from vidiff.config import SAMPLER_NAMES
    from vidiff.diffusion import SAMPLERS

    assert sorted(SAMPLER_NAMES) == sorted(SAMPLERS)


def test_default_steps_are_the_samplers_own():
    from vidiff.config import default_steps

    assert default_steps(1000, "ddpm") == 100 and default_steps(1000, "dpmpp-2m-sde") == 50
    assert default_steps(20, "ddpm") == 20  # a model trained with fewer timesteps: every one of them


def test_dpmpp_2m_step_orders():
    """The first-order step is DDIM (eta 0) for the ODE form; the last step returns the estimate."""
    from vidiff.diffusion import dpmpp_2m_step

    a = make_alphas_cumprod("cosine", 1000)
    g = torch.Generator().manual_seed(1)
    x_t, x0 = torch.randn(2, 3, 2, 4, 4, generator=g), torch.randn(2, 3, 2, 4, 4, generator=g)
    eps = (x_t - a[600].sqrt() * x0) / (1 - a[600]).sqrt()
    assert torch.allclose(dpmpp_2m_step(x_t, x0, a[600], a[500]), ddim_step(x_t, x0, eps, a[600], a[500]), atol=1e-5)
    assert torch.equal(dpmpp_2m_step(x_t, x0, a[0], torch.tensor(1.0, dtype=torch.float64), x0 * 0, a[20]), x0)


@pytest.mark.parametrize("objective", ["eps", "v", "x0"])
def test_prediction_conversions_round_trip(objective):
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(3, 3, 2, 4, 4, generator=g)
    eps = torch.randn(3, 3, 2, 4, 4, generator=g)
    a = torch.tensor([0.9, 0.5, 0.02])
    x_t = q_sample(x0, a, eps)
    pred = training_target(Objective(objective), x0, eps, a)
    x0_hat, eps_hat = to_x0_eps(Objective(objective), pred, x_t, a)
    assert torch.allclose(x0_hat, x0, atol=1e-4) and torch.allclose(eps_hat, eps, atol=1e-4)


def test_sampling_is_deterministic_under_a_generator():
    den = Denoiser(lambda x, t, c=None: 0.1 * x, "cosine", 100, "eps")
    shape = (2, 3, 4, 8, 8)
    runs = [sample(den, shape, den.alphas_cumprod, s, 10, eta=1.0, generator=torch.Generator().manual_seed(3))
            for s in ("ddpm", "ddpm", "ddim", "ddim", "dpmpp-2m-sde", "dpmpp-2m-sde")]
    assert torch.equal(runs[0], runs[1]) and torch.equal(runs[2], runs[3]) and torch.equal(runs[4], runs[5])
    assert not torch.equal(runs[0], runs[2]) and not torch.equal(runs[0], runs[4])


def test_min_snr_weighting_per_objective():
    from vidiff.diffusion.objectives import loss_weight

    snr = torch.tensor([0.1, 5.0, 100.0])
    # Every objective's weighted loss equals min(snr, gamma) * ||x0 - x0_hat||^2 (Hang et al. 2023).
    assert torch.allclose(loss_weight(Objective.X0, snr, 5.0), torch.tensor([0.1, 5.0, 5.0]))
    assert torch.allclose(loss_weight(Objective.EPS, snr, 5.0) * snr, torch.tensor([0.1, 5.0, 5.0]))
    assert torch.allclose(loss_weight(Objective.V, snr, 5.0) * (snr + 1), torch.tensor([0.1, 5.0, 5.0]))
    assert torch.equal(loss_weight(Objective.V, snr, None), torch.ones(3))


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_schedule_shift_divides_the_snr(schedule):
    base, shifted = make_alphas_cumprod(schedule, 1000), make_alphas_cumprod(schedule, 1000, shift=2.0)
    snr = lambda a: a / (1 - a)  # noqa: E731
    assert torch.allclose(snr(shifted) * 4, snr(base), rtol=1e-9)
    assert (shifted.diff() < 0).all() and (shifted < base).all()  # still decreasing, noisier at every t
    assert torch.equal(make_alphas_cumprod(schedule, 1000, shift=1.0), base)
    with pytest.raises(ValueError, match="shift must be > 0"):
        make_alphas_cumprod(schedule, 1000, shift=0.0)


def test_video_noise_correlates_frames_and_stays_standard_normal():
    from vidiff.diffusion.schedules import video_noise

    g = torch.Generator().manual_seed(0)
    iid = video_noise((4, 3, 8, 16, 16), 0.0, torch.Generator().manual_seed(0))
    assert torch.equal(iid, torch.randn((4, 3, 8, 16, 16), generator=torch.Generator().manual_seed(0)))
    n = video_noise((64, 3, 8, 16, 16), 0.6, g)  # (B, C, F, H, W)
    assert abs(n.mean()) < 0.02 and abs(n.std() - 1) < 0.02
    a, b = n[:, :, 0].flatten(), n[:, :, 5].flatten()
    assert abs(torch.corrcoef(torch.stack([a, b]))[0, 1] - 0.6) < 0.02
    across = torch.corrcoef(torch.stack([n[:, 0].flatten(), n[:, 1].flatten()]))[0, 1]
    assert abs(across) < 0.02  # channels and pixels stay independent


def test_colour_noise_scales_what_differs_between_channels_and_keeps_brightness():
    from vidiff.diffusion.schedules import video_noise

    shape = (32, 3, 4, 16, 16)  # (B, C, F, H, W)
    plain = video_noise(shape, 0.3, torch.Generator().manual_seed(0))
    assert torch.equal(video_noise(shape, 0.3, torch.Generator().manual_seed(0), chroma=1.0), plain)
    n = video_noise(shape, 0.3, torch.Generator().manual_seed(0), chroma=2.5)
    b, bp = n.mean(dim=1, keepdim=True), plain.mean(dim=1, keepdim=True)
    assert torch.allclose(b, bp, atol=1e-6)  # the same brightness noise, std 1 / sqrt(3) ...
    assert abs(b.std() - 3 ** -0.5) < 0.01
    assert torch.allclose(n - b, 2.5 * (plain - bp), atol=1e-5)  # ... and 2.5 x the colour noise
    assert abs((n - b).std() - 2.5 * (2 / 3) ** 0.5) < 0.02
    with pytest.raises(ValueError, match="needs 3 .RGB. channels, got 4"):
        video_noise((1, 4, 2, 4, 4), chroma=2.0)


def test_sampling_draws_the_trained_noise():
    from vidiff.diffusion.schedules import Noise, video_noise

    seen = []
    def denoise(x, t):  # noqa: E306
        seen.append(x.clone())
        return torch.zeros_like(x), x
    shape = (2, 3, 6, 4, 4)
    sample(denoise, shape, make_alphas_cumprod("cosine", 100), num_steps=2,
           generator=torch.Generator().manual_seed(1), noise=Noise(correlation=0.5))
    assert torch.equal(seen[0], video_noise(shape, 0.5, torch.Generator().manual_seed(1)))
    for sampler in ("ddim", "ddpm", "dpmpp-2m-sde"):  # x_T and every fresh draw along the way, coloured as trained
        seen.clear()
        sample(denoise, shape, make_alphas_cumprod("cosine", 100), sampler, num_steps=2, eta=1.0,
               generator=torch.Generator().manual_seed(1), noise=Noise(chroma=3.0))
        g = torch.Generator().manual_seed(1)
        x_T = video_noise(shape, 0.0, g, chroma=3.0)
        assert torch.equal(seen[0], x_T)
        if sampler == "ddpm":  # the zero x0 estimate makes the step's mean a multiple of x_T: the rest is fresh noise
            ac = make_alphas_cumprod("cosine", 100)
            a_t, a_prev = ac[99].double(), ac[49].double()
            coef = ((a_t / a_prev).sqrt() * (1 - a_prev) / (1 - a_t)).float()
            fresh = (seen[1] - coef * x_T) / ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)).sqrt().float()
            assert torch.allclose(fresh, video_noise(shape, 0.0, g, chroma=3.0), atol=1e-4)


@pytest.mark.parametrize("sampler", ["ddim", "ddpm", "dpmpp-2m", "dpmpp-2m-sde"])
def test_exact_denoiser_of_a_finite_dataset_samples_its_clips(sampler):
    # For a dataset of a few clips, E[x0 | x_t] is a softmax-weighted mean of them: driven by that exact
    # denoiser, a correct sampler must end on one of the clips (an end-to-end check of the whole loop).
    torch.manual_seed(0)
    data = torch.randn(6, 3, 4, 4, 4).clamp(-1, 1)  # (N, C, F, H, W)
    ac = make_alphas_cumprod("cosine", 1000)

    def denoise(x, t):
        a = ac[t[0]].float()
        d2 = ((x.flatten(1)[:, None] - a.sqrt() * data.flatten(1)[None]) ** 2).sum(-1)  # (B, N)
        x0 = (torch.softmax(-d2 / (2 * (1 - a)), dim=1) @ data.flatten(1)).view_as(x)
        return x0, (x - a.sqrt() * x0) / (1 - a).sqrt()

    out = sample(denoise, (8, 3, 4, 4, 4), ac, sampler=sampler, num_steps=25, generator=torch.Generator().manual_seed(1))
    nearest = torch.cdist(out.flatten(1), data.flatten(1)).min(1).values
    assert nearest.max() < 1e-3


class _Recorder(torch.nn.Module):
    """A self-conditioned 'network' that records the x0 estimate it is given and returns x_t / 2."""

    def __init__(self):
        super().__init__()
        self.config = type("Cfg", (), {"self_condition": True})()
        self.seen = []

    def forward(self, x, c_noise, cond=None, x_self=None):
        self.seen.append(None if x_self is None else x_self.clone())
        return x / 2


@pytest.mark.parametrize("sampler", ["ddim", "ddpm", "dpmpp-2m", "dpmpp-2m-sde"])
def test_samplers_feed_the_previous_clipped_estimate_to_a_self_conditioned_model(sampler):
    den = Denoiser(_Recorder(), objective="x0")
    assert den.self_conditioning
    outs = []
    sample(den, (2, 3, 4, 4, 4), den.alphas_cumprod, sampler, num_steps=4, generator=torch.Generator().manual_seed(0),
           callback=lambda s: outs.append(s["x0"]))
    seen = den.net.seen
    assert len(seen) == 4 and seen[0] is None
    for given, previous in zip(seen[1:], outs[:-1]):
        assert torch.equal(given, previous) and given.abs().max() <= 1


def test_self_conditioned_training_feeds_back_a_detached_estimate_half_of_the_time():
    den = Denoiser(_Recorder(), objective="x0")
    x0 = torch.rand(2, 3, 4, 4, 4) * 2 - 1
    t = torch.tensor([10, 900])
    torch.manual_seed(0)
    twice = 0
    for _ in range(200):
        den.net.seen.clear()
        den.loss(x0, t, torch.randn_like(x0))
        assert den.net.seen[0] is None and len(den.net.seen) in (1, 2)
        if len(den.net.seen) == 2:
            twice += 1
            est = den.net.seen[1]
            assert not est.requires_grad and est.abs().max() <= 1
    assert 70 < twice < 130


def test_motion_boost_pushes_the_estimate_away_from_its_mean_over_frames():
    from vidiff.diffusion.guidance import motion_boost
    from vidiff.diffusion.schedules import make_alphas_cumprod

    ac = make_alphas_cumprod("cosine", 100)
    x0 = torch.randn(2, 3, 5, 4, 4)

    def denoise(x_t, t):  # a fixed estimate, whatever the input
        return x0.clone(), torch.zeros_like(x_t)

    denoise.alphas_cumprod, denoise.self_conditioning = ac, False
    x_t = torch.randn(2, 3, 5, 4, 4)
    t = torch.tensor([70, 30])  # the first above min_t, the second below
    out, eps = motion_boost(denoise, 0.5, min_t=50)(x_t, t)
    mean = x0.mean(2, keepdim=True)
    assert torch.allclose(out[0], x0[0] + 0.5 * (x0[0] - mean[0]), atol=1e-6)  # 1.5x the motion around the mean
    assert torch.equal(out[1], x0[1])  # below min_t: untouched
    assert torch.allclose(out.mean(2), x0.mean(2), atol=1e-6)  # the static part is kept
    a = ac[t].float().view(-1, 1, 1, 1, 1)
    assert torch.allclose(a.sqrt() * out + (1 - a).sqrt() * eps, x_t, atol=1e-5)  # eps consistent with the new x0
    same, _ = motion_boost(denoise, 0.0, min_t=0)(x_t, t)
    assert torch.equal(same, x0)


def test_dynamic_threshold_matches_diffusers_and_keeps_eps_consistent():
    from diffusers import DDPMScheduler

    from vidiff.diffusion.guidance import dynamic_threshold
    from vidiff.diffusion.schedules import make_alphas_cumprod

    ac = make_alphas_cumprod("cosine", 100)
    x0 = torch.randn(3, 3, 5, 4, 4) * torch.tensor([3.0, 0.5, 1.5]).view(3, 1, 1, 1, 1)  # s > 1, s < 1, s > 1

    def denoise(x_t, t):  # a fixed estimate, whatever the input
        return x0.clone(), torch.zeros_like(x_t)

    denoise.alphas_cumprod, denoise.self_conditioning = ac, False
    x_t, t = torch.randn(3, 3, 5, 4, 4), torch.tensor([90, 50, 10])
    reference = DDPMScheduler(thresholding=True, dynamic_thresholding_ratio=0.9, sample_max_value=1e9)
    out, eps = dynamic_threshold(denoise, 0.9)(x_t, t)
    assert torch.allclose(out, reference._threshold_sample(x0.clone()), atol=1e-6)
    assert torch.allclose(out[1], x0[1].clamp(-1, 1))  # s below 1: plain clipping
    assert out[0].abs().max() <= 1 and not torch.allclose(out[0], x0[0].clamp(-1, 1))
    a = ac[t].float().view(-1, 1, 1, 1, 1)
    assert torch.allclose(a.sqrt() * out + (1 - a).sqrt() * eps, x_t, atol=1e-5)  # eps consistent with the new x0
    with pytest.raises(ValueError, match="percentile"):
        dynamic_threshold(denoise, 0.0)


def test_sample_with_motion_boost(tmp_path, capsys):
    from test_cli import TINY

    from vidiff.cli import main

    run = tmp_path / "run"
    assert main(["train", "demo", *TINY, "model.num_labels=0", "train.steps=1", "--out", str(run), "--quiet"]) == 0
    out = tmp_path / "s"
    assert main(["sample", str(run), "--num", "2", "--steps", "3", "--motion-boost", "0.3", "--out", str(out),
                 "--quiet"]) == 0
    assert "motion boost 0.3" in capsys.readouterr().out and (out / "samples.npy").exists()
    assert main(["sample", str(run), "--num", "1", "--steps", "3", "--motion-boost", "-1", "--quiet"]) == 2
    assert "motion boost must be >= 0" in capsys.readouterr().err


def test_frame_difference_loss_counts_an_error_that_changes_between_frames_not_one_all_frames_share():
    x0 = torch.zeros(2, 3, 4, 4, 4)
    t = torch.tensor([10, 500])
    shared = torch.full_like(x0, 0.5)  # the same error in every frame
    pulsing = shared.clone()
    pulsing[:, :, 1::2] = -0.5  # as large an error, its sign flipping from frame to frame
    for pred in (shared, pulsing):
        plain = Denoiser(lambda x, c, cond=None: pred, objective="x0").loss(x0, t, torch.randn_like(x0))
        torch.testing.assert_close(plain, torch.full((2,), 0.25))
    weighted = lambda pred: Denoiser(lambda x, c, cond=None: pred, objective="x0",  # noqa: E731
                                     frame_difference_weight=0.5).loss(x0, t, torch.randn_like(x0))
    torch.testing.assert_close(weighted(shared), torch.full((2,), 0.25))
    torch.testing.assert_close(weighted(pulsing), torch.full((2,), 0.25 + 0.5 * 1.0))  # (0.5 - -0.5)^2 = 1
    # a loss mask keeps only the pairs of frames that both count
    mask = torch.zeros(2, 1, 4, 1, 1)
    mask[:, :, 2:] = 1
    den = Denoiser(lambda x, c, cond=None: pulsing, objective="x0", frame_difference_weight=0.5)
    torch.testing.assert_close(den.loss(x0, t, torch.randn_like(x0), loss_mask=mask), torch.full((2,), 0.75))


def test_a_noise_level_per_frame_noises_and_weights_each_frame_by_its_own_level():
    a = make_alphas_cumprod("cosine", 1000).float()
    x0, noise = torch.rand(2, 3, 4, 4, 4) * 2 - 1, torch.randn(2, 3, 4, 4, 4)
    t = torch.tensor([[0, 300, 600, 999], [10, 10, 10, 10]])
    x_t = q_sample(x0, a[t], noise)
    for b in range(2):
        for f in range(4):  # frame f of clip b: noised at its own level
            torch.testing.assert_close(x_t[b, :, f], q_sample(x0[b:b + 1, :, f], a[t[b, f]].expand(1), noise[b:b + 1, :, f])[0])
    seen = {}

    def net(x, c, cond=None):
        seen["c"] = c
        return torch.zeros_like(x)

    # v objective, zero prediction: the loss is the mean of the per-frame target squared
    den = Denoiser(net, objective="v", min_snr_gamma=None)
    target = a[t][:, None, :, None, None].sqrt() * noise - (1 - a[t][:, None, :, None, None]).sqrt() * x0
    torch.testing.assert_close(den.loss(x0, t, noise), target.pow(2).flatten(1).mean(1))
    assert seen["c"].shape == (2, 4)  # the network got every frame's level
    # min-SNR: a clip's weight is the mean of its frames' weights; equal levels give the per-clip value
    den5 = Denoiser(net, objective="v", min_snr_gamma=5.0)
    torch.testing.assert_close(den5.loss(x0, t[1:], noise[1:]), den5.loss(x0, t[1:, 0], noise[1:]))
    # and the estimates convert per frame
    x0_hat, eps_hat = den(x_t, t)
    torch.testing.assert_close(q_sample(x0_hat, a[t], eps_hat), x_t, atol=1e-5, rtol=1e-5)


def test_input_perturbation_noises_the_input_more_and_keeps_the_target():
    x0 = torch.rand(2, 3, 4, 4, 4) * 2 - 1
    t = torch.tensor([100, 700])
    noise = torch.randn_like(x0)
    seen = []
    zero = lambda x, c, cond=None: seen.append(x) or torch.zeros_like(x)  # noqa: E731
    den = Denoiser(zero, objective="eps", input_perturbation=0.1)
    torch.manual_seed(3)
    loss = den.loss(x0, t, noise)
    torch.manual_seed(3)
    xi = torch.randn_like(noise)  # the loss's one extra draw
    torch.testing.assert_close(seen[0], q_sample(x0, den.alpha_bar(t), noise + 0.1 * xi))
    torch.testing.assert_close(loss, (noise ** 2).mean(dim=(1, 2, 3, 4)))  # the target is the unperturbed noise
    seen.clear()
    Denoiser(zero, objective="eps").loss(x0, t, noise)  # off: the forward process itself
    torch.testing.assert_close(seen[0], q_sample(x0, den.alpha_bar(t), noise))
