"""Label conditioning and classifier-free guidance: data labels, captions, the network, the guidance
wrapper, the training loop's label dropout, and the command line."""

import numpy as np
import pytest
import torch

from vidiff.cli import main
from vidiff.config import ModelConfig, load_config
from vidiff.data.shapes import LABELS, BouncingShapes, labels_caption, parse_caption
from vidiff.diffusion import Denoiser
from vidiff.diffusion.guidance import classifier_free_guidance, matching_timesteps
from vidiff.errors import ConfigError
from vidiff.models import VideoUNet

from test_cli import TINY, run_cli

LABELLED = [*TINY, "data.max_objects=2", f"model.num_labels={len(LABELS)}"]


def test_shapes_labels_match_the_metadata_and_the_caption():
    ds = BouncingShapes(num_frames=4, size=16, max_objects=3, seed=5)
    for i in range(40):
        item = ds[i]
        n = item["num_objects"]
        lab = item["labels"]
        assert lab.shape == (3,) and (lab[n:] == -1).all()
        assert torch.equal(lab, ds.labels(i))
        for k in range(n):
            colour, shape = LABELS[lab[k]].split()
            assert shape == ("circle", "square", "triangle")[item["label_shape"][k]]
            assert colour == ("red", "green", "blue", "yellow", "magenta", "cyan")[item["label_color"][k]]
        assert labels_caption(lab) == item["caption"]
        assert parse_caption(item["caption"], 3) == lab[:n].tolist()


@pytest.mark.parametrize("text, message", [
    ("a purple circle", "expected a colour at 'purple'"),
    ("a red", "describe each object"),
    ("a red circle and a red square", "distinct colours"),
    ("a red circle, a blue square and a green triangle", "at most 2"),
])
def test_parse_caption_names_the_problem(text, message):
    with pytest.raises(ValueError, match=message):
        parse_caption(text, max_objects=2)
    assert parse_caption("Green Triangles and a red circle", 2) == [LABELS.index("green triangle"), 0]


def _labelled_denoiser(seed=0, label_attention=False):
    torch.manual_seed(seed)
    cfg = ModelConfig(channels=8, channel_mults=(1, 2), spatial_attention_levels=(1,), temporal_attention_levels=(1,),
                      head_dim=8, self_condition=True, num_labels=len(LABELS), label_attention=label_attention)
    net = VideoUNet(cfg)
    for p in net.parameters():  # zero-initialised layers (output, residual branches): make every input count
        if p.ndim > 1 and not p.any():
            torch.nn.init.normal_(p, std=0.1)
    return Denoiser(net, timesteps=50, objective="x0")


@pytest.mark.parametrize("label_attention", [False, True])
def test_labels_condition_the_network_as_a_set(label_attention):
    d = _labelled_denoiser(label_attention=label_attention)
    x, t = torch.randn(2, 3, 4, 8, 8), torch.tensor([10, 40])
    a = d(x, t, labels=torch.tensor([[0, 7], [3, -1]]))[0]
    assert a.shape == x.shape
    swapped = d(x, t, labels=torch.tensor([[7, 0], [-1, 3]]))[0]
    assert torch.allclose(a, swapped, atol=1e-5)  # slot order does not matter
    other = d(x, t, labels=torch.tensor([[0, 8], [3, -1]]))[0]
    assert not torch.allclose(a[0], other[0], atol=1e-4) and torch.allclose(a[1], other[1], atol=1e-5)
    none = d(x, t, labels=torch.full((2, 2), -1))[0]
    assert torch.allclose(none, d(x, t)[0], atol=1e-6)  # no labels == the unconditional model
    with pytest.raises(ValueError, match="labels must be"):
        d(x, t, labels=torch.tensor([[0, 1]]))
    wider = d(x, t, labels=torch.tensor([[0, 7, -1], [-1, 3, -1]]))[0]  # an empty slot is no label
    assert torch.allclose(a, wider, atol=1e-5)


@pytest.mark.parametrize("spacetime", [(), (0, 1)])
def test_label_attention_follows_every_attention_layer(spacetime):
    from vidiff.models.layers import LabelAttention

    cfg = ModelConfig(channels=8, channel_mults=(1, 2), spatial_attention_levels=(1,), temporal_attention_levels=(1,),
                      spacetime_attention_levels=spacetime, head_dim=8, num_labels=len(LABELS), label_attention=True)
    net = VideoUNet(cfg)
    layers = [m for m in net.modules() if isinstance(m, LabelAttention)]
    assert len(layers) == (3 if spacetime else 0) + 3 + 1  # three blocks per level with attention, and the middle
    assert net.mid_layers[-1] is net.mid_label_attention
    out = net(torch.randn(2, 3, 4, 8, 8), torch.rand(2), labels=torch.tensor([[0, 7], [3, -1]]))
    assert out.shape == (2, 3, 4, 8, 8)


def test_label_attention_reads_each_label_and_starts_as_a_no_op():
    from vidiff.models.layers import LabelAttention
    from vidiff.training.checkpoint import init_from_weights

    with_attn = _labelled_denoiser(2, label_attention=True)
    layers = [m for m in with_attn.net.modules() if isinstance(m, LabelAttention)]
    assert len(layers) == 3 + 1  # level 1 of the encoder, its two decoder blocks, the middle
    plain = _labelled_denoiser(3)
    fresh = init_from_weights(with_attn.net, plain.net.state_dict(), "test")  # a trained model gets the layers
    assert fresh and all(k == "label_null" or ".q." in k or ".kv." in k or ".proj." in k or ".norm." in k for k in fresh)
    for layer in layers:
        torch.nn.init.zeros_(layer.proj.weight), torch.nn.init.zeros_(layer.proj.bias)
    x, t, labels = torch.randn(2, 3, 4, 8, 8), torch.tensor([10, 40]), torch.tensor([[0, 7], [3, -1]])
    assert torch.allclose(with_attn(x, t, labels=labels)[0], plain(x, t, labels=labels)[0], atol=1e-6)
    # the layer itself: each position mixes the value vectors of the null token and the visible labels only
    layer = LabelAttention(8, 16, 4)
    torch.nn.init.eye_(layer.proj.weight)
    h, context = torch.randn(2, 8, 2, 3, 3), torch.randn(2, 3, 16)
    visible = torch.tensor([[True, True, False], [True, False, False]])
    out = layer(h, context, visible)
    changed = context.clone()
    changed[0, 2], changed[1, 1:] = 5.0, -5.0  # hidden tokens
    assert torch.allclose(out, layer(h, changed, visible), atol=1e-6)
    changed[0, 1] = 5.0  # a visible one
    assert not torch.allclose(out[0], layer(h, changed, visible)[0], atol=1e-3)
    v_null = layer.kv(context[1, 0])[8:]  # the second clip sees only its null token: every position gets its value
    assert torch.allclose(out[1] - h[1], v_null[:, None, None, None].expand_as(h[1]), atol=1e-5)


def test_classifier_free_guidance_combines_the_two_predictions():
    d = _labelled_denoiser(1)
    x, t, x_self = torch.randn(3, 3, 4, 8, 8), torch.tensor([5, 25, 45]), torch.randn(3, 3, 4, 8, 8).clamp(-1, 1)
    labels = torch.tensor([[0, 4], [9, -1], [17, 2]])
    c = d(x, t, x_self=x_self, labels=labels)
    u = d(x, t, x_self=x_self)
    for w, want in [(1.0, c), (0.0, u)]:
        got = classifier_free_guidance(d, labels, w)(x, t, x_self=x_self)
        assert all(torch.allclose(g, v, atol=1e-5) for g, v in zip(got, want))
    x0, eps = classifier_free_guidance(d, labels, 3.0)(x, t, x_self=x_self)  # one batched call of 2B
    assert torch.allclose(x0, u[0] + 3 * (c[0] - u[0]), atol=1e-4)
    assert torch.allclose(eps, u[1] + 3 * (c[1] - u[1]), atol=1e-4)
    # eps stays the one that x0 implies: x_t = sqrt(a) x0 + sqrt(1 - a) eps
    a = d.alpha_bar(t)[:, None, None, None, None]
    assert torch.allclose(a.sqrt() * x0 + (1 - a).sqrt() * eps, x, atol=1e-3)
    # a guidance interval: guided at t <= 25, the conditional model alone above
    x0, eps = classifier_free_guidance(d, labels, 3.0, max_t=25)(x, t, x_self=x_self)
    assert torch.allclose(x0[:2], u[0][:2] + 3 * (c[0][:2] - u[0][:2]), atol=1e-4)
    assert torch.allclose(x0[2], c[0][2], atol=1e-5) and torch.allclose(eps[2], c[1][2], atol=1e-5)
    x0, _ = classifier_free_guidance(d, labels, 3.0, max_t=4)(x, t, x_self=x_self)  # all above: one plain call
    assert torch.allclose(x0, c[0], atol=1e-5)
    # a weight per sample: 2 + 1.5 for each label past the first (two labels: 3.5, one: 2)
    x0, eps = classifier_free_guidance(d, labels, 2.0, per_label=1.5)(x, t, x_self=x_self)
    w = torch.tensor([3.5, 2.0, 3.5])[:, None, None, None, None]
    assert torch.allclose(x0, u[0] + w * (c[0] - u[0]), atol=1e-4)
    assert torch.allclose(eps, u[1] + w * (c[1] - u[1]), atol=1e-4)
    x0, _ = classifier_free_guidance(d, labels[1:2], 1.0, per_label=1.5)(x[1:2], t[1:2], x_self=x_self[1:2])
    assert torch.allclose(x0, c[0][1:2], atol=1e-5)  # one label, weight 1: the conditional model alone
    # adaptive projected guidance: the guidance term's part along the conditional estimate kept `parallel` times;
    # checked per sample against a projection computed with numpy in float64
    x0, eps = classifier_free_guidance(d, labels, 3.0, parallel=0.25)(x, t, x_self=x_self)
    for i in range(3):
        cc, dd = c[0][i].detach().double().numpy().ravel(), (c[0][i] - u[0][i]).detach().double().numpy().ravel()
        par = np.dot(dd, cc) / np.dot(cc, cc) * cc
        want = cc + 2.0 * (dd - 0.75 * par)
        assert np.allclose(x0[i].detach().double().numpy().ravel(), want, atol=1e-4)
    assert torch.allclose(a.sqrt() * x0 + (1 - a).sqrt() * eps, x, atol=1e-3)  # eps follows x0
    x0, _ = classifier_free_guidance(d, labels, 3.0, parallel=1.0)(x, t, x_self=x_self)
    assert torch.allclose(x0, u[0] + 3 * (c[0] - u[0]), atol=1e-4)  # eta = 1: plain guidance
    # guidance rescaling: the guided estimate's mean and std brought back to the conditional one's, phi of it mixed
    # in; checked per sample with numpy in float64
    x0, eps = classifier_free_guidance(d, labels, 3.0, rescale=0.7)(x, t, x_self=x_self)
    for i in range(3):
        cc, uu = c[0][i].detach().double().numpy().ravel(), u[0][i].detach().double().numpy().ravel()
        g = uu + 3.0 * (cc - uu)
        r = cc.mean() + (g - g.mean()) * cc.std(ddof=1) / g.std(ddof=1)
        assert np.allclose(x0[i].detach().double().numpy().ravel(), 0.7 * r + 0.3 * g, atol=1e-4)
    assert torch.allclose(a.sqrt() * x0 + (1 - a).sqrt() * eps, x, atol=1e-3)  # eps follows x0
    full = classifier_free_guidance(d, labels, 3.0, rescale=1.0)(x, t, x_self=x_self)[0]
    assert torch.allclose(full.mean((1, 2, 3, 4)), c[0].mean((1, 2, 3, 4)), atol=1e-4)
    assert torch.allclose(full.std((1, 2, 3, 4)), c[0].std((1, 2, 3, 4)), atol=1e-4)
    # each object's own contrast for a sample asked for two: the estimate with both labels against the estimate with
    # that one left out, from separate calls; a sample asked for one gets none; guided only at t <= max_t
    loo = [d(x, t, x_self=x_self, labels=torch.tensor([[-1, 4], [9, -1], [-1, 2]])),
           d(x, t, x_self=x_self, labels=torch.tensor([[0, -1], [9, -1], [17, -1]]))]
    contrast = sum(c[0] - o[0] for o in loo)  # zero for the second sample (its labels unchanged)
    x0, eps = classifier_free_guidance(d, labels, 2.0, per_object=0.75)(x, t, x_self=x_self)
    assert torch.allclose(x0, u[0] + 2 * (c[0] - u[0]) + 0.75 * contrast, atol=1e-4)
    assert torch.allclose(x0[1], u[0][1] + 2 * (c[0][1] - u[0][1]), atol=1e-4) and contrast[0].abs().max() > 1e-3
    assert torch.allclose(a.sqrt() * x0 + (1 - a).sqrt() * eps, x, atol=1e-3)  # eps follows x0
    x0, _ = classifier_free_guidance(d, labels, 2.0, per_object=0.75, max_t=25)(x, t, x_self=x_self)
    assert torch.allclose(x0[2], c[0][2], atol=1e-5)  # above the interval: the conditional model alone
    assert torch.allclose(x0[0], u[0][0] + 2 * (c[0][0] - u[0][0]) + 0.75 * contrast[0], atol=1e-4)
    x0, _ = classifier_free_guidance(d, labels[1:2], 1.0, per_object=0.75)(x[1:2], t[1:2], x_self=x_self[1:2])
    assert torch.allclose(x0, c[0][1:2], atol=1e-5)  # nobody asked for two: the plain path


def test_training_sees_the_batch_labels_and_drops_a_fraction(tmp_path, monkeypatch):
    from vidiff.training import train

    seen = []
    loss = Denoiser.loss

    def spy(self, x0, t, noise, *args, labels=None, **kwargs):
        seen.append(labels.clone())
        return loss(self, x0, t, noise, *args, labels=labels, **kwargs)

    monkeypatch.setattr(Denoiser, "loss", spy)
    cfg = load_config(None, [*LABELLED, "train.steps=60", "train.batch_size=4", "train.label_dropout=0.25",
                             "data.length=64"])
    train(cfg, tmp_path / "run", progress=False)
    rows = torch.cat(seen)  # (240, 2)
    dropped = (rows == -1).all(1)
    assert 30 <= int(dropped.sum()) <= 90  # 25% of 240 = 60, binomial sd 6.7
    kept = rows[~dropped]
    assert (kept[:, 0] >= 0).all() and (kept < len(LABELS)).all()
    # the kept rows are labels of the training clips (a clip's first object always exists)
    data = BouncingShapes(num_frames=4, size=16, max_objects=2, seed=0, length=64)
    pool = {tuple(data.labels(i).tolist()) for i in range(64)}
    assert all(tuple(r) in pool for r in kept.tolist())


def test_sample_with_prompts_and_the_errors(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "demo", *LABELLED, "--out", str(run), "--quiet"]) == 0
    out = tmp_path / "s"
    assert main(["sample", str(run), "--num", "3", "--steps", "2", "--prompt", "a red circle and a blue square",
                 "--prompt", "a green triangle", "--guidance", "3", "--out", str(out), "--quiet"]) == 0
    assert np.load(out / "samples.npy").shape == (3, 4, 16, 16, 3)
    assert (out / "captions.txt").read_text().splitlines() == [
        "sample_000: a red circle and a blue square", "sample_001: a green triangle",
        "sample_002: a red circle and a blue square"]
    assert main(["sample", str(run), "--num", "2", "--steps", "3", "--prompt", "a red circle", "--guidance-below",
                 "25", "--out", str(tmp_path / "b"), "--quiet"]) == 0
    # the weight grows with the asked objects: only the two-object video changes with --guidance-per-label
    two_one = ["--num", "2", "--steps", "3", "--prompt", "a red circle and a blue square", "--prompt", "a green triangle"]
    for w in ("0", "1"):
        assert main(["sample", str(run), *two_one, "--guidance-per-label", w, "--out", str(tmp_path / w), "--quiet"]) == 0
    flat, grown = (np.load(tmp_path / w / "samples.npy") for w in ("0", "1"))
    assert np.array_equal(flat[1], grown[1]) and not np.array_equal(flat[0], grown[0])
    # without prompts: the labels of held-out clips, different per seed
    assert main(["sample", str(run), "--num", "4", "--steps", "2", "--out", str(tmp_path / "d"), "--quiet"]) == 0
    assert len((tmp_path / "d" / "captions.txt").read_text().splitlines()) == 4

    r = run_cli("sample", run, "--num", "1", "--steps", "2", "--prompt", "a purple circle", "--out", tmp_path / "x")
    assert r.returncode != 0 and "Traceback" not in r.stderr and "purple" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_eval_samples_of_a_labelled_model_ask_for_held_out_labels(tmp_path, monkeypatch):
    from vidiff.config import DEFAULT_GUIDANCE
    from vidiff.evaluation.evaluate import generated_samples

    run = tmp_path / "run"
    assert main(["train", "demo", *LABELLED, "train.steps=1", "--out", str(run), "--quiet"]) == 0
    cfg = load_config(run / "config.json")
    frames, meta = generated_samples(run, cfg, 3, 2, "ddim", 0.0, 0, "cpu", 2, tmp_path / "ev", False)
    assert frames.shape == (3, 4, 16, 16, 3)
    assert meta["labels"] == "held-out clips" and not meta["reused"]
    assert meta["guidance"] == cfg.sample.guidance == 1.5  # the model's own weight (the demo preset's)
    assert generated_samples(run, cfg, 3, 2, "ddim", 0.0, 0, "cpu", 2, tmp_path / "ev", False)[1]["reused"]
    # another guidance is sampled afresh (not served from the cache) with that guidance
    from vidiff.pipeline import VideoPipeline

    seen, call = {}, VideoPipeline.__call__
    monkeypatch.setattr(VideoPipeline, "__call__", lambda self, **kw: seen.update(kw) or call(self, **kw))
    other, meta = generated_samples(run, cfg, 3, 2, "ddim", 0.0, 0, "cpu", 2, tmp_path / "ev", False,
                                    guidance=DEFAULT_GUIDANCE + 3, guidance_per_label=0.0)
    assert not meta["reused"] and meta["guidance"] == DEFAULT_GUIDANCE + 3 and meta["guidance_per_label"] == 0.0
    assert seen["guidance_scale"] == DEFAULT_GUIDANCE + 3 and seen["guidance_per_label"] == 0.0
    assert other.shape == frames.shape


def test_a_model_with_label_attention_trains_and_samples(tmp_path):
    from vidiff.training.checkpoint import load_tensors

    run = tmp_path / "run"
    assert main(["train", "demo", *LABELLED, "model.label_attention=true", "model.spacetime_attention_levels=[0]",
                 "--out", str(run), "--quiet"]) == 0
    weights = load_tensors(run / "checkpoints" / "step_00000004" / "model.safetensors")
    proj = [k for k in weights if k.endswith(".proj.weight") and k.replace(".proj.", ".kv.") in weights]
    assert len(proj) == 3 + 3 + 1  # levels 0 and 1: one encoder and two decoder blocks each; the middle
    assert all(weights[k].abs().sum() > 0 for k in proj)  # the zero-initialised outputs learned
    out = tmp_path / "s"
    assert main(["sample", str(run), "--num", "2", "--steps", "2", "--prompt", "a red circle and a blue square",
                 "--out", str(out), "--quiet"]) == 0
    assert np.load(out / "samples.npy").shape == (2, 4, 16, 16, 3)


def test_a_masked_model_with_labels_samples_with_guidance(tmp_path):
    run = tmp_path / "masked"
    assert main(["train", "demo", *LABELLED, "masks.enabled=true", "masks.max_context=2", "--out", str(run),
                 "--quiet"]) == 0
    out = tmp_path / "s"
    assert main(["sample", str(run), "--num", "2", "--steps", "2", "--prompt", "a cyan square", "--out", str(out),
                 "--quiet"]) == 0
    assert np.load(out / "samples.npy").shape == (2, 4, 16, 16, 3)


def test_prompt_on_an_unconditional_model_is_an_error(tmp_path):
    run = tmp_path / "plain"
    assert main(["train", "demo", *TINY, "model.num_labels=0", "train.steps=1", "--out", str(run), "--quiet"]) == 0
    r = run_cli("sample", run, "--num", "1", "--steps", "2", "--prompt", "a red circle", "--out", tmp_path / "x")
    assert r.returncode != 0 and "trained without labels" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("overrides, message", [
    (["model.num_labels=5"], "must be 18"),
    (["model.num_labels=18", "data.dataset=/nonexistent"], "shapes, or videos in two or more class folders"),
    (["train.label_dropout=1.0"], "label_dropout"),
    (["model.label_attention=true", "model.num_labels=0"], "label_attention needs model.num_labels > 0"),
    (["model.label_attention=true", "model.num_labels=18", "model.architecture=dit"], "label_attention needs model.arch"),
])
def test_label_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_asked_attributes_agree_with_the_classifier_labels():
    from vidiff.evaluation.classifier import asked_attributes, clip_labels

    ds = BouncingShapes(num_frames=4, size=16, max_objects=3, seed=2)
    got = asked_attributes(torch.stack([ds.labels(i) for i in range(30)]))
    for i in range(30):
        want = clip_labels(ds, i)
        assert np.array_equal(got["present"][i].numpy(), want["present"])
        assert np.array_equal(got["shape"][i].numpy(), want["shape"])


def test_tasks_take_a_prompt_through_every_conditioning_method(tmp_path, capsys):
    from vidiff import tasks
    from vidiff.io import write_video
    from vidiff.pipeline import VideoPipeline

    run = tmp_path / "masked"
    assert main(["train", "demo", *LABELLED, "train.steps=1", "masks.enabled=true", "masks.max_context=2", "--out",
                 str(run), "--quiet"]) == 0
    pipe = VideoPipeline.from_pretrained(run)
    torch.manual_seed(0)
    with torch.no_grad():  # random weights everywhere (no zero-initialised layer), so the labels change the output
        for p in pipe.denoiser.parameters():
            p.normal_(0, 0.2)
    context = torch.rand(3, 2, 16, 16) * 2 - 1
    red, green = pipe.labels_for(["a red circle"]), pipe.labels_for(["a green square"])
    for method in ("masked", "reconstruction", "replacement"):
        outs = [tasks.predict(pipe, context, 2, method=method, num_steps=2, labels=lab,
                              generator=torch.Generator().manual_seed(1)) for lab in (red, green, None)]
        for out in outs:
            assert out.shape == (1, 3, 4, 16, 16) and torch.equal(out[:, :, :2], context[None])  # context kept
        assert not torch.allclose(outs[0], outs[1]) and not torch.allclose(outs[0], outs[2]), method
    # the model's weight per asked object past the first reaches the tasks: a two-object prompt changes with it
    for prompt, changes in (("a red circle and a blue square", True), ("a red circle", False)):
        outs = []
        for w in (0.0, 2.0):
            pipe.config.sample.guidance_per_label = w
            outs.append(tasks.predict(pipe, context, 2, method="masked", num_steps=2,
                                      labels=pipe.labels_for([prompt]), generator=torch.Generator().manual_seed(1)))
        assert torch.allclose(outs[0], outs[1]) != changes, prompt
    pipe.config.sample.guidance_per_label = 0.5
    video = torch.rand(2, 3, 4, 16, 16) * 2 - 1  # one label row for both videos, or one row per video
    a = tasks.vary(pipe, video, 0.6, num_steps=2, labels=red, generator=torch.Generator().manual_seed(2))
    b = tasks.vary(pipe, video, 0.6, num_steps=2, labels=torch.cat([red, green]),
                   generator=torch.Generator().manual_seed(2))
    assert torch.allclose(a[0], b[0]) and not torch.allclose(a[1], b[1])

    clip = tmp_path / "clip.mp4"
    write_video(clip, torch.rand(3, 4, 16, 16) * 2 - 1)
    out = tmp_path / "p"
    assert main(["predict", str(run), "--input", str(clip), "--context", "2", "--steps", "2", "--prompt",
                 "a blue triangle", "--label-guidance", "3", "--out", str(out), "--quiet"]) == 0
    assert "asked for 'a blue triangle'" in capsys.readouterr().out
    assert np.load(out / "samples.npy").shape == (1, 4, 16, 16, 3)
    plain = tmp_path / "plain"
    assert main(["train", "demo", *TINY, "model.num_labels=0", "train.steps=1", "--out", str(plain), "--quiet"]) == 0
    assert main(["extend", str(plain), "--frames", "6", "--steps", "2", "--prompt", "a red circle", "--out",
                 str(tmp_path / "e"), "--quiet"]) == 2
    assert "trained without labels" in capsys.readouterr().err


def test_sample_with_guidance_rescale(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "demo", *LABELLED, "train.steps=1", "--out", str(run), "--quiet"]) == 0
    out = tmp_path / "s"
    assert main(["sample", str(run), "--num", "2", "--steps", "2", "--guidance-rescale", "0.5", "--out", str(out),
                 "--quiet"]) == 0
    assert "rescaled 0.5" in capsys.readouterr().out and (out / "samples.npy").exists()
    assert main(["sample", str(run), "--num", "1", "--steps", "2", "--guidance-rescale", "1.5", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "guidance rescale must be between 0 and 1" in err and len(err.strip().splitlines()) == 1


def test_the_weight_per_label_is_the_models_own_unless_asked(tmp_path, monkeypatch):
    import vidiff.pipeline as P

    run = tmp_path / "run"
    assert main(["train", "demo", *LABELLED, "train.steps=1", "sample.guidance_per_label=0.5", "--out", str(run),
                 "--quiet"]) == 0
    seen, cfg_fn = [], P.classifier_free_guidance
    monkeypatch.setattr(P, "classifier_free_guidance", lambda *a, **kw: seen.append(kw["per_label"]) or cfg_fn(*a, **kw))
    assert main(["sample", str(run), "--num", "1", "--steps", "2", "--out", str(tmp_path / "a"), "--quiet"]) == 0
    assert main(["sample", str(run), "--num", "1", "--steps", "2", "--guidance-per-label", "0", "--out",
                 str(tmp_path / "b"), "--quiet"]) == 0
    assert seen == [0.5, 0.0]
    assert load_config(run / "config.json").sample.guidance_per_label == 0.5


def test_the_guidance_weight_is_the_models_own_unless_asked(tmp_path, monkeypatch):
    import vidiff.pipeline as P
    import vidiff.tasks.generate as G
    from vidiff.config import DEFAULT_GUIDANCE
    from vidiff.evaluation.evaluate import generated_samples

    run = tmp_path / "run"
    assert main(["train", "demo", *LABELLED, "train.steps=1", "sample.guidance=3.5", "--out", str(run), "--quiet"]) == 0
    assert load_config(run / "config.json").sample.guidance == 3.5
    seen, cfg_fn = [], P.classifier_free_guidance
    monkeypatch.setattr(P, "classifier_free_guidance", lambda *a, **kw: seen.append(a[2]) or cfg_fn(*a, **kw))
    assert main(["sample", str(run), "--num", "1", "--steps", "2", "--out", str(tmp_path / "a"), "--quiet"]) == 0
    assert main(["sample", str(run), "--num", "1", "--steps", "2", "--guidance", "1.5", "--out",
                 str(tmp_path / "b"), "--quiet"]) == 0
    assert seen == [3.5, 1.5]
    meta = generated_samples(run, load_config(run / "config.json"), 1, 2, "ddim", 0.0, 0, "cpu", 1, tmp_path / "ev",
                             False)[1]
    assert meta["guidance"] == 3.5 and seen[-1] == 3.5
    # the tasks too: a prompt without --label-guidance takes the model's weight
    seen_tasks, task_fn = [], G.classifier_free_guidance
    monkeypatch.setattr(G, "classifier_free_guidance", lambda *a, **kw: seen_tasks.append(a[2]) or task_fn(*a, **kw))
    pipe = P.VideoPipeline.from_pretrained(str(run))
    G.predict(pipe, torch.rand(3, 2, 16, 16) * 2 - 1, 2, num_steps=2, labels=pipe.labels_for(["a red circle"]))
    G.predict(pipe, torch.rand(3, 2, 16, 16) * 2 - 1, 2, num_steps=2, labels=pipe.labels_for(["a red circle"]),
              label_guidance=1.0)
    assert seen_tasks == [3.5, 1.0]
    # a run saved before the field existed samples at the old default
    import json

    data = json.loads((run / "config.json").read_text())
    del data["sample"]["guidance"]
    (tmp_path / "old.json").write_text(json.dumps(data))
    assert load_config(tmp_path / "old.json").sample.guidance == DEFAULT_GUIDANCE


def test_shipped_and_demo_guidance_weights():
    """The demo preset is guided at 1.5 for every clip (docs/benchmarks.md, thirty-fourth round); the longer-trained
    shapes32 at the default 2, also without more per label (twenty-sixth round)."""
    from vidiff.cli import _config_path
    from vidiff.config import DEFAULT_GUIDANCE
    from vidiff.pipeline import resolve_run

    demo, s32 = load_config(_config_path("demo")).sample, load_config(resolve_run("shapes32") / "config.json").sample
    assert (demo.guidance, demo.guidance_per_label) == (1.5, 0.0)
    assert (s32.guidance, s32.guidance_per_label) == (DEFAULT_GUIDANCE, 0.0)


def test_the_demo_is_guided_by_the_shipped_image_model_it_starts_from():
    """The demo preset samples with image guidance by shapes32-image (docs/benchmarks.md, thirty-third round), which
    fits it: same labels, frame size and schedule."""
    from vidiff.build import check_image_model
    from vidiff.cli import _config_path
    from vidiff.pipeline import resolve_run

    demo = load_config(_config_path("demo"))
    assert demo.sample.image_guidance == 1.0 and demo.sample.image_model == "shapes32-image"
    shipped = load_config(resolve_run("shapes32") / "config.json").sample
    assert (shipped.image_guidance, shipped.image_model) == (1.0, "shapes32-image")
    assert check_image_model(demo, "shapes32-image").data.num_frames == 1
    demo.diffusion.chroma_noise = 2.0  # a model trained with other noise cannot be guided by it
    with pytest.raises(ConfigError, match=r"colour noise\) = .*2\.0\), got .*1\.0\)"):
        check_image_model(demo, "shapes32-image")


def test_image_guidance_adds_the_image_models_direction_in_every_frame():
    """x0 += s * (x0_img(frame, labels) - x0_img(frame, no labels)) for every frame, each frame denoised alone by the
    image model (with its slice of the previous estimate), checked against per-frame calls; eps follows x0."""
    from vidiff.diffusion.guidance import image_guidance
    from vidiff.errors import VidiffError

    d, im = _labelled_denoiser(1), _labelled_denoiser(2)
    x, t, x_self = torch.randn(3, 3, 4, 8, 8), torch.tensor([5, 25, 45]), torch.randn(3, 3, 4, 8, 8).clamp(-1, 1)
    labels = torch.tensor([[0, 4], [9, -1], [17, 2]])
    base = classifier_free_guidance(d, labels, 2.0)
    x0_b, _ = base(x, t, x_self=x_self)
    want = torch.stack([im(x[:, :, f:f + 1], t, x_self=x_self[:, :, f:f + 1], labels=labels)[0][:, :, 0]
                        - im(x[:, :, f:f + 1], t, x_self=x_self[:, :, f:f + 1])[0][:, :, 0] for f in range(4)], 2)
    assert want.abs().max() > 1e-3  # the image model's labels matter
    x0, eps = image_guidance(base, im, labels, 1.5)(x, t, x_self=x_self)
    assert torch.allclose(x0, x0_b + 1.5 * want, atol=1e-4)
    a = d.alpha_bar(t)[:, None, None, None, None]
    assert torch.allclose(a.sqrt() * x0 + (1 - a).sqrt() * eps, x, atol=1e-3)  # eps follows x0
    same = image_guidance(base, im, labels, 0.0)(x, t, x_self=x_self)
    assert torch.allclose(same[0], x0_b)
    x0, _ = image_guidance(base, im, labels, 1.5, t_range=(20, 30))(x, t, x_self=x_self)  # only the second sample
    assert torch.allclose(x0[1], x0_b[1] + 1.5 * want[1], atol=1e-4)
    assert torch.allclose(x0[[0, 2]], x0_b[[0, 2]], atol=1e-5)
    assert image_guidance(base, im, labels, 1.5).self_conditioning  # samplers still pass the previous estimate
    # an image model of another schedule is asked at its timestep of the same noise level
    shifted = Denoiser(im.net, timesteps=im.alphas_cumprod.shape[0], objective="x0", shift=2.0)
    t_img = matching_timesteps(d.alphas_cumprod, shifted.alphas_cumprod)
    want = torch.stack([shifted(x[:, :, f:f + 1], t_img[t], x_self=x_self[:, :, f:f + 1], labels=labels)[0][:, :, 0]
                        - shifted(x[:, :, f:f + 1], t_img[t], x_self=x_self[:, :, f:f + 1])[0][:, :, 0]
                        for f in range(4)], 2)
    x0, _ = image_guidance(base, shifted, labels, 1.5)(x, t, x_self=x_self)
    assert torch.allclose(x0, x0_b + 1.5 * want, atol=1e-4)
    with pytest.raises(VidiffError, match="other colour noise"):  # but not one trained with other colour noise
        image_guidance(base, Denoiser(im.net, timesteps=im.alphas_cumprod.shape[0], objective="x0", chroma_noise=2.0),
                       labels, 1.0)
    torch.manual_seed(0)
    unlabelled = Denoiser(VideoUNet(ModelConfig(channels=8, channel_mults=(1, 2), head_dim=8)), timesteps=50)
    with pytest.raises(VidiffError, match="without labels"):
        image_guidance(base, unlabelled, labels, 1.0)


def test_matching_timesteps_pairs_equal_noise_levels():
    """The identity for one schedule; for a shifted one (SNR / s^2), the timestep of the nearest log-SNR, which is
    later (noisier) in the unshifted schedule's terms, and its last timestep where the other is never that noisy."""
    from vidiff.diffusion.schedules import make_alphas_cumprod

    a1, a2 = make_alphas_cumprod("cosine", 1000), make_alphas_cumprod("cosine", 1000, shift=4.0)
    assert torch.equal(matching_timesteps(a1, a1), torch.arange(1000))
    m = matching_timesteps(a2, a1)  # the shift-4 model's t -> the plain model's
    snr = lambda a: a / (1 - a)  # noqa: E731
    for t in (0, 100, 300, 600):
        k = int(m[t])
        assert k > t and snr(a1[k]) <= snr(a2[t]) * 1.2 and snr(a1[k - 1]) >= snr(a2[t]) / 1.2
    assert m[999] == 999 and bool((m[1:] >= m[:-1]).all())


def test_sample_with_image_guidance_and_its_errors(tmp_path, capsys):
    run, image = tmp_path / "run", tmp_path / "image"
    assert main(["train", "demo", *LABELLED, "train.steps=1", "--out", str(run), "--quiet"]) == 0
    assert main(["train", "demo", *LABELLED, "data.num_frames=1", "train.steps=20", "--out", str(image),
                 "--quiet"]) == 0  # (enough steps for its labels to matter)
    two = ["--num", "2", "--steps", "3", "--prompt", "a red circle and a blue square", "--quiet"]
    assert main(["sample", str(run), *two, "--out", str(tmp_path / "a")]) == 0
    assert main(["sample", str(run), *two, "--image-guidance", "2", "--image-model", str(image),
                 "--out", str(tmp_path / "b")]) == 0
    assert f"image guidance 2 by {image}" in capsys.readouterr().out
    plain, guided = (np.load(tmp_path / k / "samples.npy") for k in "ab")
    assert plain.shape == guided.shape == (2, 4, 16, 16, 3) and not np.array_equal(plain, guided)
    # the model's own default, from its config
    cfg = load_config(run / "config.json")
    cfg.sample.image_guidance, cfg.sample.image_model = 2.0, str(image)
    cfg.save(run / "config.json")
    assert main(["sample", str(run), *two, "--out", str(tmp_path / "c")]) == 0
    assert np.array_equal(np.load(tmp_path / "c" / "samples.npy"), guided)
    assert main(["sample", str(run), *two, "--image-guidance", "0", "--out", str(tmp_path / "d")]) == 0
    assert np.array_equal(np.load(tmp_path / "d" / "samples.npy"), plain)
    # `vidiff eval`'s cache of samples tells image-guided samples from the others
    from vidiff.evaluation.evaluate import generated_samples

    _, meta = generated_samples(run, cfg, 2, 2, "ddim", 0.0, 0, "cpu", 2, tmp_path / "ev", False, image_guidance=0.0)
    assert "image_guidance" not in meta
    _, meta = generated_samples(run, cfg, 2, 2, "ddim", 0.0, 0, "cpu", 2, tmp_path / "ev", False)  # the config's 2
    assert not meta["reused"] and meta["image_guidance"] == 2.0 and meta["image_model"] == str(image)
    # an image model that cannot guide this one: one line, no traceback
    other = tmp_path / "other"
    assert main(["train", "demo", *LABELLED, "data.num_frames=1", "data.size=32", "train.steps=1", "--out", str(other),
                 "--quiet"]) == 0
    capsys.readouterr()
    assert main(["sample", str(run), *two, "--image-model", str(other), "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert "cannot guide this model" in err and len(err.strip().splitlines()) == 1
    assert main(["sample", str(run), *two, "--image-guidance", "-1", "--out", str(tmp_path / "f")]) == 2
    assert "image guidance must be >= 0" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="sample.image_guidance needs sample.image_model"):
        load_config(None, [*LABELLED, "sample.image_guidance=1"])
    # an unconditional model ignores image guidance: no error
    load_config(None, [*TINY, "model.num_labels=0", "sample.image_guidance=2", "sample.image_model=shapes32-image"])
    # a run whose config names an image model that cannot guide it (the demo preset made smaller) trains, says so
    # once, and is saved to sample without image guidance
    capsys.readouterr()
    assert main(["train", "demo", *LABELLED, "train.steps=1", "sample.image_guidance=2",
                 "sample.image_model=shapes32-image", "--out", str(tmp_path / "g"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "sampled without image guidance" in out and "shapes32-image cannot guide this model" in out
    assert load_config(tmp_path / "g" / "config.json").sample.image_guidance == 0
