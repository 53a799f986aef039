"""Training: learning works at all, resume is exact, checkpoints are safe."""

import csv
from dataclasses import replace

import pytest
import torch

from vidiff.build import build_denoiser
from vidiff.config import load_config
from vidiff.errors import CheckpointError
from vidiff.training import train
from vidiff.training.checkpoint import checkpoint_dirs, load_into, load_tensors, save_tensors
from vidiff.training.loop import StepBatchSampler, lr_at


def assert_same_last_checkpoint(run_a, run_b):
    """The last checkpoints of two runs hold the same model, EMA and optimizer tensors, bit for bit."""
    for name in ("model.safetensors", "ema.safetensors", "optimizer.safetensors"):
        a = load_tensors(checkpoint_dirs(run_a)[-1] / name)
        b = load_tensors(checkpoint_dirs(run_b)[-1] / name)
        assert a.keys() == b.keys(), name
        for k in a:
            assert torch.equal(a[k], b[k]), (name, k)


@pytest.mark.parametrize("optimizer", ["adam", "muon"])
def test_overfits_one_fixed_batch(optimizer):
    """The classic sanity check: with batch, timesteps and noise fixed, the loss must fall 10x."""
    cfg = load_config(None, ["model.channels=16", "model.channel_mults=[1,2]", "model.spatial_attention_levels=[1]",
                             "model.temporal_attention_levels=[1]", "model.head_dim=8", "diffusion.objective=eps",
                             "diffusion.min_snr_gamma=null", "train.lr=3e-3",
                             "train.optimizer=" + ("adamw" if optimizer == "adam" else optimizer)])
    torch.manual_seed(0)
    den = build_denoiser(cfg)
    from vidiff.data import BouncingShapes

    ds = BouncingShapes(num_frames=4, size=16, max_objects=1)
    x0 = torch.stack([ds[i]["video"] for i in range(2)])
    t = torch.tensor([100, 600])
    noise = torch.randn_like(x0)
    if optimizer == "adam":
        opt = torch.optim.Adam(den.net.parameters(), lr=3e-3)
    else:  # Muon for the hidden matrices, AdamW for the rest (vidiff.training.optim)
        from vidiff.training.optim import MuonAdamW, build_optimizer

        opt = build_optimizer(den.net, cfg.train)
        assert isinstance(opt, MuonAdamW)
    losses = []
    for _ in range(300):
        loss = den.loss(x0, t, noise).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10, (losses[0], losses[-1])


def test_lr_schedule():
    cfg = load_config(None, ["train.steps=100", "train.warmup_steps=10", "train.lr=1.0", "train.lr_min_ratio=0.1"]).train
    assert lr_at(0, cfg) == pytest.approx(0.1) and lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(10, cfg) == pytest.approx(1.0) and lr_at(100, cfg) == pytest.approx(0.1)


def test_lr_decay_follows_a_time_budget_that_ends_first():
    cfg = load_config(None, ["train.steps=100", "train.warmup_steps=10", "train.lr=1.0", "train.lr_min_ratio=0.1"]).train
    assert lr_at(5, cfg, budget_progress=0.9) == pytest.approx(0.6)  # warm-up is in steps, whatever the clock says
    assert lr_at(55, cfg, budget_progress=0.5) == lr_at(55, cfg) == pytest.approx(0.55)  # the steps lead
    assert lr_at(20, cfg, budget_progress=0.5) == pytest.approx(0.55)  # the budget leads
    assert lr_at(20, cfg, budget_progress=1.5) == pytest.approx(0.1)


def test_a_time_budgeted_run_ends_its_lr_decay_with_the_budget(tiny_config, tmp_path, monkeypatch):
    import vidiff.training.loop as loop

    clock = iter(range(10**6))  # each reading of the clock is one second later
    monkeypatch.setattr(loop.time, "perf_counter", lambda: float(next(clock)))
    tiny_config.train.steps = 1000
    tiny_config.train.time_budget_minutes = 1.0
    summary = train(tiny_config, tmp_path / "run", progress=False)
    assert summary["stopped_early"] and summary["step"] < 1000
    lrs = [float(r["lr"]) for r in csv.DictReader(open(tmp_path / "run" / "loss.csv"))]
    peak, low = tiny_config.train.lr, tiny_config.train.lr * tiny_config.train.lr_min_ratio
    assert lrs[1] == pytest.approx(peak)  # the end of warm-up
    assert all(b <= a for a, b in zip(lrs[1:], lrs[2:]))  # then only down
    assert lrs[-1] < low + 0.1 * (peak - low), lrs  # nearly all the way by the budget's end, far from train.steps


def test_a_time_budgeted_runs_bar_counts_to_the_budgets_end(tiny_config, tmp_path, monkeypatch):
    import tqdm.auto

    import vidiff.training.loop as loop

    seen = []  # (steps done, the bar's total) after every step

    class Bar(tqdm.auto.tqdm):
        def update(self, n=1):
            out = super().update(n)
            if getattr(self, "desc", "").startswith("training"):
                seen.append((self.n, self.total))
            return out

        def close(self):
            if getattr(self, "desc", "").startswith("training"):
                seen.append((self.n, self.total))
            return super().close()

    monkeypatch.setattr(tqdm.auto, "tqdm", Bar)
    clock = iter(range(10**6))  # each reading of the clock is one second later
    monkeypatch.setattr(loop.time, "perf_counter", lambda: float(next(clock)))
    tiny_config.train.steps = 1000
    tiny_config.train.time_budget_minutes = 1.0
    summary = train(tiny_config, tmp_path / "run", progress=True)
    assert summary["stopped_early"] and seen[-1] == (summary["step"], summary["step"])  # ends full, not at 1000
    assert all(n <= total for n, total in seen)  # never past its end
    assert all(abs(total - summary["step"]) <= 3 for _, total in seen[4:])  # a steady pace: the end foreseen early


def test_batches_are_a_function_of_the_step():
    s = StepBatchSampler(length=10, batch_size=4, seed=1)
    it = iter(s)
    batches = [next(it) for _ in range(5)]
    assert batches[3] == StepBatchSampler(10, 4, 1, start_step=3).batch(3) == next(iter(StepBatchSampler(10, 4, 1, 3)))
    flat = sum(batches, [])
    assert sorted(flat[:10]) == list(range(10))  # epoch 0 is a permutation
    # ranks take disjoint slices of the same global batch
    r0, r1 = StepBatchSampler(100, 4, 1, rank=0, world=2).batch(2), StepBatchSampler(100, 4, 1, rank=1, world=2).batch(2)
    assert not set(r0) & set(r1)


def test_short_clip_steps_are_a_function_of_the_step_and_the_same_on_every_rank(tiny_config):
    from vidiff.data import build_dataset
    from vidiff.training.loop import JointClips, _collate

    short = (50, 6, 0.5)
    batches = [StepBatchSampler(100, 2, 1, short=short).batch(n) for n in range(40)]
    kinds = [isinstance(b[0], tuple) for b in batches]
    assert 10 < sum(kinds) < 30  # about half the steps are short ones
    assert all(len(b) == (6 if k else 2) for b, k in zip(batches, kinds))
    assert batches == [StepBatchSampler(100, 2, 1, start_step=n, short=short).batch(n) for n in range(40)]
    for n in range(40):  # every rank makes the same choice, and takes other clips
        r0, r1 = (StepBatchSampler(100, 2, 1, rank=r, world=2, short=short).batch(n) for r in (0, 1))
        assert isinstance(r0[0], tuple) == isinstance(r1[0], tuple) and r0 != r1
    assert StepBatchSampler(100, 2, 1, short=(50, 6, 0.0)).batch(3) == StepBatchSampler(100, 2, 1).batch(3)

    d = tiny_config.data
    data = JointClips(build_dataset(d), build_dataset(replace(d, num_frames=2)))
    step = batches[kinds.index(True)]
    assert _collate([data[i] for i in step])["video"].shape == (6, 3, 2, d.size, d.size)  # (B, C, F, H, W)
    assert _collate([data[i] for i in batches[kinds.index(False)]])["video"].shape == (2, 3, 4, d.size, d.size)


def test_short_clip_training_runs(tiny_config, tmp_path):
    tiny_config.train.short_clip_frames = 2
    tiny_config.train.short_clip_prob = 1.0
    assert train(tiny_config, tmp_path / "run", progress=False)["step"] == 6
    rows = list(csv.DictReader(open(tmp_path / "run" / "loss.csv")))
    assert len(rows) == 6 and all(float(r["loss"]) > 0 for r in rows)


def test_train_writes_a_run_folder(tiny_config, tmp_path):
    summary = train(tiny_config, tmp_path / "run", progress=False)
    run = tmp_path / "run"
    assert summary["step"] == 6
    for name in ("config.json", "model.safetensors", "loss.csv", "train_summary.json"):
        assert (run / name).is_file(), name
    assert [p.name for p in checkpoint_dirs(run)] == ["step_00000003", "step_00000006"]
    rows = list(csv.DictReader(open(run / "loss.csv")))
    assert len(rows) == 6 and all(float(r["loss"]) > 0 for r in rows)
    assert list((run / "previews").glob("*.gif"))
    with pytest.raises(CheckpointError, match="already holds a run"):
        train(tiny_config, run, progress=False)


@pytest.mark.parametrize("self_condition,short_clips,optimizer",
                         [(False, 0, "adamw"), (True, 0, "adamw"), (False, 2, "adamw"), (False, 0, "muon")])
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tiny_config, tmp_path, self_condition, short_clips,
                                                                optimizer):
    # self-conditioning draws its coin from the step's RNG; short-clip steps are chosen by the step's index
    tiny_config.model.self_condition = self_condition
    tiny_config.train.short_clip_frames = short_clips
    tiny_config.train.optimizer = optimizer
    train(tiny_config, tmp_path / "full", progress=False)
    train(tiny_config, tmp_path / "split", progress=False, max_steps=3)  # "killed" after step 3
    assert checkpoint_dirs(tmp_path / "split")[-1].name == "step_00000003"
    train(tiny_config, tmp_path / "split", resume=True, progress=False)
    assert_same_last_checkpoint(tmp_path / "full", tmp_path / "split")


def test_resume_refuses_a_different_model(tiny_config, tmp_path):
    train(tiny_config, tmp_path / "run", progress=False, max_steps=3)
    other = load_config(None, [f"{k}" for k in []])
    other.data, other.diffusion, other.train = tiny_config.data, tiny_config.diffusion, tiny_config.train
    with pytest.raises(CheckpointError, match="'model' config differs"):
        train(other, tmp_path / "run", resume=True, progress=False)
    with pytest.raises(CheckpointError, match="no config.json"):
        train(tiny_config, tmp_path / "nothing", resume=True, progress=False)


def test_weights_loading_is_safe_and_names_mismatches(tiny_config, tmp_path):
    den = build_denoiser(tiny_config)
    state = den.net.state_dict()
    pt = tmp_path / "weights.pt"
    torch.save(state, pt)
    with pytest.raises(CheckpointError, match="refusing to load weights.pt"):
        load_tensors(pt)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        load_tensors(junk)
    key = next(iter(state))
    bad = dict(state)
    bad[key] = torch.zeros(3, 3)
    save_tensors(tmp_path / "bad.safetensors", bad)
    with pytest.raises(CheckpointError, match=f"tensor '{key}' has shape"):
        load_into(den.net, load_tensors(tmp_path / "bad.safetensors"))
    del bad[key]
    with pytest.raises(CheckpointError, match=f"lacks tensor '{key}'"):
        load_into(den.net, bad)


def test_resume_may_change_the_loss_weighting_only(tiny_config, tmp_path):
    train(tiny_config, tmp_path / "run", progress=False, max_steps=3)
    tiny_config.diffusion.min_snr_gamma = None  # fine-tune under plain v-MSE: allowed
    assert train(tiny_config, tmp_path / "run", resume=True, progress=False)["step"] == 6
    tiny_config.diffusion.objective = "eps"  # another parameterisation: a different model
    tiny_config.train.steps = 8
    with pytest.raises(CheckpointError, match="'diffusion' config differs"):
        train(tiny_config, tmp_path / "run", resume=True, progress=False)


def test_resume_refuses_another_optimizer(tiny_config, tmp_path):
    train(tiny_config, tmp_path / "run", progress=False, max_steps=3)
    tiny_config.train.optimizer = "muon"
    with pytest.raises(CheckpointError, match="optimizer state does not fit MuonAdamW"):
        train(tiny_config, tmp_path / "run", resume=True, progress=False)


def test_checkpoint_ema_weights_finds_kept_steps_and_names_missing_ones(tmp_path):
    from torch import nn

    from vidiff.training.checkpoint import checkpoint_ema_weights, save_checkpoint
    from vidiff.training.ema import EMA

    net = nn.Linear(3, 2)
    ema = EMA(net, decay=0.5)
    opt = torch.optim.AdamW(net.parameters())
    for step in (10, 20):
        save_checkpoint(tmp_path, step, net, ema, opt)
    path = checkpoint_ema_weights(tmp_path, 10)
    assert path.parent.name == "step_00000010"
    assert torch.equal(load_tensors(path)["weight"], ema.state_dict()["weight"])
    with pytest.raises(CheckpointError, match=r"no checkpoint of step 15 .*step_00000010, step_00000020"):
        checkpoint_ema_weights(tmp_path, 15)


def test_init_from_copies_matching_tensors_and_starts_the_rest_fresh(tiny_config, tmp_path, capsys):
    train(tiny_config, tmp_path / "a", progress=False)
    source = load_tensors(tmp_path / "a" / "model.safetensors")
    tiny_config.model.pixel_channels = 4  # adds a full-resolution head: conv_out changes shape, pixel_* are new
    tiny_config.train.init_from = str(tmp_path / "a")
    tiny_config.train.lr = 1e-12  # the weights stay where they started
    tiny_config.train.steps = 1
    train(tiny_config, tmp_path / "b", progress=False)
    assert "tensors start fresh (pixel_in.weight" in capsys.readouterr().out
    started = load_tensors(checkpoint_dirs(tmp_path / "b")[-1] / "model.safetensors")
    copied = [k for k in started if k in source and source[k].shape == started[k].shape]
    assert "conv_in.spatial.weight" in copied and not any(k.startswith(("pixel", "conv_out")) for k in copied)
    for k in copied:
        torch.testing.assert_close(started[k], source[k], atol=1e-9, rtol=0)
    tiny_config.model.channels = 16  # a model of another width: little matches
    tiny_config.model.pixel_channels = 0
    with pytest.raises(CheckpointError, match="matches only"):
        train(tiny_config, tmp_path / "c", progress=False)
    tiny_config.train.init_from = str(tmp_path / "missing")
    with pytest.raises(CheckpointError, match="run folder not found"):
        train(tiny_config, tmp_path / "d", progress=False)
    assert not (tmp_path / "d" / "config.json").exists()  # refused before anything was written


def test_denoiser_takes_a_wrapped_network_without_asking_its_truth(tiny_config):
    """torch.compile's wrapper raises on len() (and so on bool()): the denoiser must call it as it is given."""
    den = build_denoiser(tiny_config)

    class Wrapped(torch.nn.Module):  # stands in for torch._dynamo's OptimizedModule
        def __init__(self, net):
            super().__init__()
            self.inner, self.calls = net, 0

        def __len__(self):
            raise TypeError("no len()")

        def forward(self, *args, **kwargs):
            self.calls += 1
            return self.inner(*args, **kwargs)

    wrapped = Wrapped(den.net)
    d = tiny_config.data
    x = torch.randn(2, 3, d.num_frames, d.size, d.size)
    out = den.predict(x, torch.tensor([3, 500]), net=wrapped)
    assert wrapped.calls == 1 and torch.equal(out, den.predict(x, torch.tensor([3, 500])))


def test_trainable_freezes_the_rest_and_resumes_exactly(tiny_config, tmp_path, capsys):
    from vidiff.errors import ConfigError

    train(tiny_config, tmp_path / "a", progress=False)
    source = load_tensors(tmp_path / "a" / "model.safetensors")
    tiny_config.train.init_from = str(tmp_path / "a")
    tiny_config.train.trainable = ("temporal",)
    train(tiny_config, tmp_path / "full", progress=False)
    assert "training 38 of 184 tensors" in capsys.readouterr().out
    trained = load_tensors(checkpoint_dirs(tmp_path / "full")[-1] / "model.safetensors")
    moved = {k for k in trained if not torch.equal(trained[k], source[k])}
    assert moved and all("temporal" in k for k in moved)  # only the temporal layers learnt
    assert any(k.endswith("temporal.weight") for k in moved)
    assert torch.equal(trained["conv_in.spatial.weight"], source["conv_in.spatial.weight"])
    # resume: the optimizer holds state for the trainable tensors only, and continues exactly
    train(tiny_config, tmp_path / "split", progress=False, max_steps=3)
    train(tiny_config, tmp_path / "split", resume=True, progress=False)
    assert_same_last_checkpoint(tmp_path / "full", tmp_path / "split")
    # a pattern that matches nothing, or is not a regular expression: refused before the run folder is written
    for bad, message in ((("temporal", "nothing_like_this"), "'nothing_like_this' matches none"),
                         (("(",), "is not a regular expression")):
        tiny_config.train.trainable = bad
        with pytest.raises(ConfigError, match=message):
            train(tiny_config, tmp_path / "bad", progress=False)
        assert not (tmp_path / "bad" / "config.json").exists()


def resumes_exactly_and_changes_the_run(cfg, tmp_path, **diffusion_options):
    """Train with the given diffusion options in one go and in two calls (the same weights), and without them (other
    weights: the option's draws change the run). Leaves cfg without them."""
    for name, value in diffusion_options.items():
        setattr(cfg.diffusion, name, value)
    train(cfg, tmp_path / "full", progress=False)
    train(cfg, tmp_path / "split", progress=False, max_steps=3)
    train(cfg, tmp_path / "split", resume=True, progress=False)
    a = load_tensors(tmp_path / "full" / "model.safetensors")
    b = load_tensors(tmp_path / "split" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    default = type(cfg.diffusion)()
    for name in diffusion_options:
        setattr(cfg.diffusion, name, getattr(default, name))
    train(cfg, tmp_path / "plain", progress=False)
    c = load_tensors(tmp_path / "plain" / "model.safetensors")
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_per_frame_noise_trains_and_resumes_exactly(tiny_config, tmp_path):
    from vidiff.config import validate_run
    from vidiff.errors import ConfigError

    resumes_exactly_and_changes_the_run(tiny_config, tmp_path, per_frame_noise=0.5)
    tiny_config.diffusion.per_frame_noise = 1.5
    with pytest.raises(ConfigError, match=r"per_frame_noise must be in \[0, 1\]"):
        validate_run(tiny_config)
    tiny_config.diffusion.per_frame_noise, tiny_config.model.architecture = 0.5, "dit"
    with pytest.raises(ConfigError, match="needs model.architecture=unet"):
        validate_run(tiny_config)


def test_rest_lr_scale_trains_the_other_layers_slower_and_resumes_exactly(tiny_config, tmp_path, capsys):
    from vidiff.config import validate_run
    from vidiff.errors import ConfigError

    train(tiny_config, tmp_path / "a", progress=False)
    source = load_tensors(tmp_path / "a" / "model.safetensors")
    tiny_config.train.init_from = str(tmp_path / "a")
    tiny_config.train.trainable = ("temporal",)
    tiny_config.train.rest_lr_scale = 0.25
    train(tiny_config, tmp_path / "one", progress=False, max_steps=1)
    assert "training 38 of 184 tensors" in capsys.readouterr().out
    # AdamW's first step moves every element with a gradient by its lr (the step's update m / sqrt(v) is +-1)
    step1 = load_tensors(checkpoint_dirs(tmp_path / "one")[-1] / "model.safetensors")
    moved = {k: (step1[k] - source[k]).abs().max().item() for k in step1}
    full = max(v for k, v in moved.items() if "temporal" in k)
    rest = max(v for k, v in moved.items() if "temporal" not in k)
    assert full == pytest.approx(lr_at(0, tiny_config.train), rel=1e-3)
    assert rest == pytest.approx(0.25 * full, rel=1e-3)
    # resume: each group keeps its share of the lr
    train(tiny_config, tmp_path / "full", progress=False)
    train(tiny_config, tmp_path / "split", progress=False, max_steps=3)
    train(tiny_config, tmp_path / "split", resume=True, progress=False)
    assert_same_last_checkpoint(tmp_path / "full", tmp_path / "split")
    tiny_config.train.trainable = ()
    with pytest.raises(ConfigError, match="rest_lr_scale needs train.trainable"):
        validate_run(tiny_config)


def test_colour_noise_reaches_training_sampling_and_the_saved_config(tiny_config, tmp_path, monkeypatch):
    import vidiff.diffusion.schedules as schedules
    from vidiff.diffusion.schedules import video_noise
    from vidiff.pipeline import VideoPipeline

    seen = []

    def recording(*args, **kwargs):
        seen.append(kwargs.get("chroma", 1.0))
        return video_noise(*args, **kwargs)

    monkeypatch.setattr(schedules, "video_noise", recording)  # what Noise.draw calls
    tiny_config.diffusion.chroma_noise = 2.0
    train(tiny_config, tmp_path / "run", progress=False)
    assert len(seen) >= 6 and set(seen) == {2.0}  # every training step's noise (and the previews' x_T)
    pipe = VideoPipeline.from_pretrained(tmp_path / "run")
    assert pipe.config.diffusion.chroma_noise == 2.0 and pipe.denoiser.noise.chroma == 2.0
    seen.clear()
    pipe(num_videos=1, num_inference_steps=3, sampler="ddpm", generator=torch.Generator().manual_seed(0))
    assert seen == [2.0] * 3  # x_T and the two fresh draws


def test_clean_context_trains_on_the_other_frames_and_resumes_exactly(tiny_config, tmp_path, monkeypatch):
    from vidiff.config import validate_run
    from vidiff.diffusion import Denoiser
    from vidiff.errors import ConfigError

    resumes_exactly_and_changes_the_run(tiny_config, tmp_path, clean_context=0.5, clean_context_frames=2)
    # what every step sees: the given first frames at level 0, and only the others in the loss
    seen, loss = [], Denoiser.loss
    monkeypatch.setattr(Denoiser, "loss", lambda self, x0, t, noise, **kw: seen.append((t, kw["loss_mask"])) or
                        loss(self, x0, t, noise, **kw))
    tiny_config.diffusion.clean_context, tiny_config.diffusion.clean_context_frames = 1.0, 2
    train(tiny_config, tmp_path / "always", progress=False)
    assert len(seen) == tiny_config.train.steps
    for t, mask in seen:  # t (B, F); mask (B, 1, F, 1, 1), 1 where a frame counts
        given = mask[:, 0, :, 0, 0] == 0
        assert t.shape == (2, 4) and given[:, 0].all() and not given[:, 2:].any()  # the first 1 or 2 frames
        assert (t[given] == 0).all() and torch.equal(t[~given], t[:, -1:].expand_as(t)[~given])  # the rest: one level
    for overrides, message in ((["diffusion.clean_context=1.5"], r"clean_context must be in \[0, 1\]"),
                               (["data.num_frames=4", "diffusion.clean_context=0.5", "diffusion.clean_context_frames=4"],
                                r"clean_context_frames must be in 1..data.num_frames-1"),
                               (["data.num_frames=1", "diffusion.clean_context=0.5"],
                                r"clean_context_frames must be in 1..data.num_frames-1"),  # single frames: all given
                               (["diffusion.clean_context=0.5", "masks.enabled=true"], "choose one"),
                               (["data.num_frames=8", "diffusion.clean_context=0.5", "diffusion.clean_context_frames=4",
                                 "train.short_clip_frames=4"], "short_clip_frames must exceed")):
        with pytest.raises(ConfigError, match=message):
            validate_run(load_config(None, overrides))
    tiny_config.diffusion.clean_context, tiny_config.model.architecture = 0.5, "dit"
    with pytest.raises(ConfigError, match="clean_context needs model.architecture=unet"):
        validate_run(tiny_config)
