"""Score one sampler setting on a run or one of its EMA checkpoints: every setting starts from the same x_T.

    python bench/sampler_probe.py RUN [--checkpoint STEP] [--num 64] [--sampler ddpm] [--steps 100] [--eta 0] [--eps-scale 1.0]
                                  [--self-cond {previous,same,off}] [--self-cond-below T] [--guidance W]
                                  [--guidance-below T] [--skip-guidance S --skip-layers spacetime:1]

Draws x_T for all `--num` videos at once from `--seed` (frames correlated as the model was trained), runs the
sampler over the whole batch and prints the scores of bench/sample_checks.py (empty clips, persistence, colour
drift, centroid speed, objects per clip, colour share) and which clips came out empty. Because x_T is shared, rows
for one model differ only by the sampler. `--self-cond` and `--self-cond-below` change what a self-conditioned model
gets as its previous estimate. `--eps-scale L` divides the predicted noise by L and makes x0 consistent with it
(the exposure-bias correction of Ning et al. 2024, "Elucidating the exposure bias in diffusion models"). A
label-conditioned model is asked for the labels of held-out clips with classifier-free guidance `--guidance`.
`--skip-guidance S` adds spatiotemporal skip guidance (Hyung et al. 2024): S times the difference between the
network and the network with the attention layers `--skip-layers` skipped. `--min-objects 2` asks only for the
labels of held-out two-object clips (every sample scores the two-object check), `--trajectory NPZ` keeps the x0
estimate of every 5th step (where along sampling a clip is decided), `--dynamic-threshold P` thresholds every estimate
as Imagen does, `--image-guidance S` adds guidance by an image model's labels in every frame
(`vidiff.diffusion.guidance.image_guidance`), `--first-frame RUN` draws each clip's first frame by an image model
and conditions the clip on it (reconstruction guidance, or `--first-frame-method clean` for a model trained with
`diffusion.clean_context`), `--low-expert RUN` lets an image model denoise every frame alone below
`--low-expert-below`. Used for the "Fifth round" to "Thirty-eighth round" tables of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from vidiff.config import DEFAULT_GUIDANCE, SAMPLER_NAMES  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run")
    p.add_argument("--checkpoint", type=int, help="use the EMA weights of RUN/checkpoints/step_N")
    p.add_argument("--num", type=int, default=64)
    p.add_argument("--sampler", default="ddpm", choices=SAMPLER_NAMES)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--eta", type=float, default=0.0, help="DDIM's eta (0: deterministic, 1: DDPM)")
    p.add_argument("--eps-scale", type=float, default=1.0)
    p.add_argument("--self-cond", default="previous", choices=["previous", "same", "off"],
                   help="a self-conditioned model's x_self: the previous step's x0 estimate (what the samplers do), "
                        "a first estimate from the same x_t (as in training; two passes per step) or none")
    p.add_argument("--self-cond-below", type=int, default=None, metavar="T",
                   help="pass x_self only at timesteps <= T (none above)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--guidance", type=float, default=DEFAULT_GUIDANCE,
                   help="label-conditioned models: classifier-free guidance weight; each sample asks for the labels "
                        f"of a held-out clip (default: {DEFAULT_GUIDANCE:g})")
    p.add_argument("--guidance-per-label", type=float, default=None, metavar="W",
                   help="added to --guidance for each asked label past the first, as vidiff sample does (default: "
                        "the model's sample.guidance_per_label; the twenty-fourth and twenty-fifth rounds used 1 for "
                        "every model, the rounds before 0)")
    p.add_argument("--guidance-per-object", type=float, default=0.0, metavar="LAMBDA",
                   help="for clips asked for 2+ objects, add LAMBDA times each object's own contrast (all labels "
                        "against all but that one; one more network evaluation per object)")
    p.add_argument("--guidance-parallel", type=float, default=1.0, metavar="ETA",
                   help="adaptive projected guidance (Sadat et al. 2025): keep this share of the guidance term's part "
                        "along the conditional estimate (default 1: plain classifier-free guidance)")
    p.add_argument("--guidance-rescale", type=float, default=0.0, metavar="PHI",
                   help="guidance rescaling (Lin et al. 2023): bring the guided estimate's mean and std back to the "
                        "conditional one's, PHI of it mixed in (default 0: plain guidance)")
    p.add_argument("--guidance-below", type=int, default=None, metavar="T",
                   help="guide only at timesteps <= T, the conditional model alone above (a guidance interval, "
                        "Kynkaanniemi et al. 2024)")
    p.add_argument("--skip-guidance", type=float, default=0.0, metavar="S",
                   help="also push away from the network with some layers skipped (spatiotemporal skip guidance, "
                        "Hyung et al. 2024): x0 += S * (x0(labels) - x0_skipped(labels))")
    p.add_argument("--skip-layers", default="spacetime",
                   help="which layers the skipped pass leaves out: spacetime, temporal or all-attention, :LEVEL for one level")
    p.add_argument("--motion-boost", type=float, default=0.0, metavar="K",
                   help="push each estimate away from its own mean over frames, x0 += K (x0 - mean over frames), "
                        "at timesteps >= --motion-boost-above (vidiff.diffusion.guidance.motion_boost)")
    p.add_argument("--motion-boost-above", type=int, default=0, metavar="T")
    p.add_argument("--frame-guidance", type=float, default=0.0, metavar="S",
                   help="temporal guidance: push each estimate away from a per-frame estimate (every frame "
                        "denoised alone, as by an image model): x0 += S * (x0(labels) - x0_frames(labels)); like --skip-guidance, "
                        "with classifier-free guidance at every step (--guidance-below does not apply)")
    p.add_argument("--frame-model", default=None, metavar="RUN",
                   help="the per-frame model of --frame-guidance (a run or shipped weights, e.g. shapes32-image; "
                        "default: the same network on one frame at a time)")
    p.add_argument("--frame-guidance-above", type=int, default=0, metavar="T",
                   help="apply --frame-guidance only at timesteps >= T")
    p.add_argument("--image-guidance", type=float, default=0.0, metavar="S",
                   help="guidance by an image model's labels, frame by frame: x0 += S * (x0_img(labels) - "
                        "x0_img(no labels)), every frame denoised alone by --image-model (a product of the video model "
                        "and the image model's p(labels | frame)^S: every frame should show every asked object). "
                        "Default 0: none, whatever the model's sample.image_guidance says")
    p.add_argument("--image-model", default="shapes32-image", metavar="RUN",
                   help="the image model of --image-guidance (a run or shipped weights)")
    p.add_argument("--image-guidance-range", type=int, nargs=2, default=None, metavar=("LO", "HI"),
                   help="apply --image-guidance only at timesteps LO <= t <= HI")
    p.add_argument("--first-frame", default=None, metavar="RUN",
                   help="factorized generation (as Emu Video, Girdhar et al. 2023): draw each clip's first frame "
                        "from this label-conditioned image model (e.g. shapes32-image) for the clip's labels, then the "
                        "clip from the video model with that frame known (reconstruction guidance, "
                        "--first-frame-weight; the sampler's other guidance as set)")
    p.add_argument("--low-expert", default=None, metavar="RUN",
                   help="an image model that denoises every frame alone below --low-expert-below (its own timestep "
                        "of the same noise level), mixed with the video model's estimate by --low-expert-weight")
    p.add_argument("--low-expert-below", type=int, default=300, metavar="T")
    p.add_argument("--low-expert-weight", type=float, default=1.0, metavar="W")
    p.add_argument("--first-frame-method", choices=("reconstruction", "clean"), default="reconstruction",
                   help="how --first-frame's frame conditions the clip: reconstruction guidance, or given clean at "
                        "noise level 0 (a model trained with diffusion.clean_context)")
    p.add_argument("--first-frame-weight", type=float, default=2.0, metavar="W",
                   help="the reconstruction-guidance weight of --first-frame")
    p.add_argument("--expert", default=None, metavar="RUN",
                   help="a high-noise expert (as eDiff-I, Balaji et al. 2022): this model (same frames, labels and "
                        "schedule, e.g. shapes32-still) denoises every step at t > --expert-above, RUN the rest")
    p.add_argument("--expert-above", type=int, default=900, metavar="T")
    p.add_argument("--weak-model", default=None, metavar="RUN",
                   help="autoguidance (Karras et al. 2024, 'Guiding a diffusion model with a bad version of "
                        "itself'): push each estimate away from this weaker model's conditional estimate, x0 += S * "
                        "(x0(labels) - x0_weak(labels)), S = --weak-guidance (their w - 1); a run or shipped weights, "
                        "e.g. the model a run started from (shapes32-still), or with --weak-checkpoint an earlier EMA "
                        "of RUN")
    p.add_argument("--weak-checkpoint", type=int, default=None, metavar="STEP",
                   help="the weak model is the EMA weights of WEAK_MODEL/checkpoints/step_STEP")
    p.add_argument("--weak-guidance", type=float, default=0.0, metavar="S")
    p.add_argument("--refine", type=float, default=0.0, metavar="S",
                   help="after sampling, noise each sample again to timestep S * T and sample from there (SDEdit on "
                        "the model's own output, Meng et al. 2022), --refine-times times")
    p.add_argument("--refine-times", type=int, default=1, metavar="K")
    p.add_argument("--grid", metavar="PNG", help="also write the first 8 samples as a frame grid (a row per video)")
    p.add_argument("--save", metavar="NPZ", help="also save the samples (videos, float16 (N, C, F, H, W) in [-1, 1]) "
                                                 "and the asked labels (labels, (N, L); none for unconditional models)")
    p.add_argument("--min-objects", type=int, default=1, metavar="K",
                   help="label-conditioned models: ask only for the labels of held-out clips with K or more objects "
                        "(2: every sample is a two-object clip, 2.4x the two-object clips of the default's 48)")
    p.add_argument("--dynamic-threshold", type=float, default=None, metavar="P",
                   help="Imagen's dynamic thresholding of every (guided) estimate: s = max(1, P-quantile of |x0|) per "
                        "sample, x0 <- clamp(x0, -s, s) / s (vidiff.diffusion.guidance.dynamic_threshold)")
    p.add_argument("--trajectory", metavar="NPZ",
                   help="also save the x0 estimate of every 5th sampler step and of the last (x0, float16 (N, K, C, F, H, "
                        "W); t, (K,)) with the asked labels: where along sampling a clip's layout is decided")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu, cuda, auto, ...: where the sampler runs (x_T is drawn on the CPU)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from sample_checks import (centre_distance, colour_drift, colour_share_text, motion, object_pixels,
                               objects_per_clip, persistence, profile_text)

    from vidiff.build import build_denoiser
    from vidiff.config import load_config
    from vidiff.diffusion.samplers import sample
    from vidiff.errors import VidiffError
    from vidiff.evaluation.metrics import object_motion
    from vidiff.pipeline import resolve_run
    from vidiff.training.checkpoint import checkpoint_ema_weights, load_into, load_tensors
    from vidiff.training.loop import resolve_device

    try:
        run = resolve_run(args.run)
        cfg = load_config(run / "config.json")
        dn = build_denoiser(cfg).eval()
        weights = run / "model.safetensors" if args.checkpoint is None else checkpoint_ema_weights(run, args.checkpoint)
        load_into(dn.net, load_tensors(weights), str(weights))
        device = resolve_device(args.device)
    except VidiffError as e:
        sys.exit(f"error: {e}")

    g = torch.Generator().manual_seed(args.seed)
    from vidiff.build import build_autoencoder, sample_shape

    autoencoder = build_autoencoder(cfg)  # latent runs: sample latents, decode them to pixels
    shape = sample_shape(cfg, args.num, autoencoder)
    x_T = dn.noise.draw(shape, g, "cpu").to(device)
    dn = dn.to(device)
    if autoencoder is not None:
        autoencoder = autoencoder.to(device)
    lam = args.eps_scale
    edn = None
    if args.expert:
        try:
            erun = resolve_run(args.expert)
            edn = build_denoiser(load_config(erun / "config.json")).eval()
            load_into(edn.net, load_tensors(erun / "model.safetensors"), str(erun))
        except VidiffError as e:
            sys.exit(f"error: {e}")
        if not torch.allclose(edn.alphas_cumprod, dn.alphas_cumprod) or edn.self_conditioning != dn.self_conditioning:
            sys.exit("error: --expert needs the same noise schedule and self-conditioning as RUN")
        edn = edn.to(device)

    base = {"dn": dn}  # --first-frame-method clean puts the known first frame in here
    low = low_t = None
    if args.low_expert:  # the image model as the low-noise expert, frame by frame (as eDiff-I's experts)
        from vidiff.diffusion.guidance import matching_timesteps
        from vidiff.pipeline import VideoPipeline

        low = VideoPipeline.from_pretrained(args.low_expert, device=str(device)).denoiser
        low_t = matching_timesteps(dn.alphas_cumprod, low.alphas_cumprod)

    def denoise(x, t, labels=None, **kw):
        if dn.self_conditioning:
            if args.self_cond == "off" or (args.self_cond_below is not None and int(t[0]) > args.self_cond_below):
                kw = {"x_self": None}
            elif args.self_cond == "same":
                kw = {"x_self": dn(x, t, x_self=None, labels=labels)[0].clamp(-1, 1)}
        if low is not None and int(t[0]) < args.low_expert_below:  # every frame alone by the image model
            B, C, F, H, W = x.shape
            fr = lambda v: v.permute(0, 2, 1, 3, 4).reshape(B * F, C, 1, H, W)  # noqa: E731
            kw_i = {"x_self": fr(kw["x_self"]) if kw.get("x_self") is not None else None} if low.self_conditioning else {}
            x0_i, _ = low(fr(x), low_t.to(t.device)[t].repeat_interleave(F),
                          labels=None if labels is None else labels.repeat_interleave(F, 0), **kw_i)
            x0_i = x0_i.reshape(B, F, C, H, W).permute(0, 2, 1, 3, 4)
            x0, _ = base["dn"](x, t, labels=labels, **kw) if args.low_expert_weight < 1 else (x0_i, None)
            x0 = x0 + args.low_expert_weight * (x0_i - x0)
            a = dn.alphas_cumprod[t].float().view(-1, 1, 1, 1, 1)
            return x0, (x - a.sqrt() * x0) / (1 - a).sqrt()
        x0, eps = (edn if edn is not None and int(t[0]) > args.expert_above else base["dn"])(x, t, labels=labels, **kw)
        if lam != 1.0:
            a = dn.alphas_cumprod[t].float().view(-1, 1, 1, 1, 1)
            eps = eps / lam
            x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
        return x0, eps

    denoise.self_conditioning = dn.self_conditioning
    denoise.alphas_cumprod, denoise.noise = dn.alphas_cumprod, dn.noise
    fn, guided = denoise, ""
    if dn.num_labels:  # label-conditioned: ask for the labels of held-out clips, as sample_checks does
        from vidiff.diffusion.guidance import classifier_free_guidance
        from vidiff.pipeline import VideoPipeline

        labels = VideoPipeline(dn, cfg, device).dataset_labels(args.num * max(1, 4 * (args.min_objects - 1)), args.seed)
        labels = labels[(labels >= 0).sum(1) >= args.min_objects][:args.num]
        if len(labels) < args.num:
            sys.exit(f"error: only {len(labels)} of the held-out clips drawn have {args.min_objects}+ objects")
        labels = labels.to(device)
        if args.guidance_per_label is None:
            args.guidance_per_label = cfg.sample.guidance_per_label
        fn = classifier_free_guidance(denoise, labels, args.guidance, max_t=args.guidance_below,
                                      per_label=args.guidance_per_label, parallel=args.guidance_parallel,
                                      per_object=args.guidance_per_object,
                                      rescale=args.guidance_rescale)
        per_label = f" (+{args.guidance_per_label:g} per label past the first)" if args.guidance_per_label else ""
        per_label += f", parallel part x{args.guidance_parallel:g}" if args.guidance_parallel != 1 else ""
        per_label += f", +{args.guidance_per_object:g} x each object's contrast" if args.guidance_per_object else ""
        per_label += f", rescaled {args.guidance_rescale:g}" if args.guidance_rescale else ""
        guided = f", guidance {args.guidance:g}{per_label}" + (
            f" at t <= {args.guidance_below}" if args.guidance_below is not None else "")
    # Skip guidance and frame guidance both push the (guided) estimate away from a weaker one: x0 += S (x0(labels) -
    # x0_weak(labels)), the conditional estimate x0(labels) coming from the same batched pass as classifier-free guidance.
    if sum(map(bool, (args.skip_guidance, args.frame_guidance, args.weak_guidance))) > 1:
        sys.exit("error: --skip-guidance, --frame-guidance and --weak-guidance cannot be combined")
    lab_all = labels if dn.num_labels else None
    sc_kw = lambda x_self: {"x_self": x_self} if dn.self_conditioning else {}  # noqa: E731
    weak = None
    if args.skip_guidance:
        from vidiff.models.layers import SpaceTimeAttention, TemporalAttention, _Attention

        kind, _, level = args.skip_layers.partition(":")
        kinds = {"spacetime": (SpaceTimeAttention,), "temporal": (TemporalAttention, SpaceTimeAttention),
                 "all-attention": (_Attention,)}[kind]
        skipped = [m for m in dn.net.modules() if isinstance(m, kinds)]
        if level:  # only the layers of one level of the U-Net
            skipped = [m for m in skipped if m.qkv.in_features == cfg.model.channels * cfg.model.channel_mults[int(level)]]
        state = {"skip": False}
        for m in skipped:
            m.register_forward_hook(lambda mod, inp, out: inp[0] if state["skip"] else out)

        def weak(x, t, x_self):  # the network with those layers skipped
            state["skip"] = True
            try:
                return denoise(x, t, labels=lab_all, **sc_kw(x_self))
            finally:
                state["skip"] = False

        w_weak, weak_from = args.skip_guidance, 0
        guided += f", skip guidance {w_weak:g} ({args.skip_layers}, {len(skipped)} layers)"
    if args.frame_guidance:
        fdn = dn
        if args.frame_model:
            frun = resolve_run(args.frame_model)
            fdn = build_denoiser(load_config(frun / "config.json")).eval()
            load_into(fdn.net, load_tensors(frun / "model.safetensors"), str(frun))
            fdn = fdn.to(device)

        def weak(x, t, x_self):  # every frame alone: (B, C, F, H, W) -> (B * F, C, 1, H, W) and back
            B, C, F, H, W = x.shape
            flat = lambda v: v.permute(0, 2, 1, 3, 4).reshape(B * F, C, 1, H, W)  # noqa: E731
            back = lambda v: v.reshape(B, F, C, H, W).permute(0, 2, 1, 3, 4)  # noqa: E731
            kw = {"x_self": flat(x_self) if x_self is not None else None} if fdn.self_conditioning else {}
            if lab_all is not None and fdn.num_labels:
                kw["labels"] = lab_all.repeat_interleave(F, 0)
            x0, eps = fdn(flat(x), t.repeat_interleave(F), **kw)
            return back(x0), back(eps)

        w_weak, weak_from = args.frame_guidance, args.frame_guidance_above
        guided += (f", frame guidance {w_weak:g} ({args.frame_model or 'same network per frame'}"
                   f"{f', t >= {weak_from}' if weak_from else ''})")
    if args.weak_guidance:
        if not args.weak_model:
            sys.exit("error: --weak-guidance needs --weak-model")
        try:
            wrun = resolve_run(args.weak_model)
            wdn = build_denoiser(load_config(wrun / "config.json")).eval()
            wweights = (wrun / "model.safetensors" if args.weak_checkpoint is None
                        else checkpoint_ema_weights(wrun, args.weak_checkpoint))
            load_into(wdn.net, load_tensors(wweights), str(wweights))
        except VidiffError as e:
            sys.exit(f"error: {e}")
        wdn = wdn.to(device)

        def weak(x, t, x_self):  # the weaker model's conditional estimate
            kw = {"x_self": x_self} if wdn.self_conditioning else {}
            return wdn(x, t, labels=lab_all, **kw)

        w_weak, weak_from = args.weak_guidance, 0
        guided += (f", autoguidance {w_weak:g} (weak: {args.weak_model}"
                   f"{f' step {args.weak_checkpoint}' if args.weak_checkpoint is not None else ''})")
    if weak is not None:
        from vidiff.diffusion.guidance import guidance_weights

        # each sample's weight, + guidance_per_label for each asked label past the first (as vidiff sample does)
        w_cfg = None if lab_all is None else guidance_weights(lab_all, args.guidance, args.guidance_per_label)

        def fn(x, t, x_self=None):
            if lab_all is None:
                x0_c, eps_c = denoise(x, t, **sc_kw(x_self))
                x0, eps = x0_c, eps_c
            else:  # classifier-free guidance, the conditional and unconditional passes in one batch
                w = w_cfg.to(x.dtype).view(-1, 1, 1, 1, 1)
                kw2 = {"x_self": torch.cat([x_self, x_self])} if x_self is not None else {}
                x0_2, eps_2 = denoise(torch.cat([x, x]), torch.cat([t, t]),
                                      labels=torch.cat([lab_all, torch.full_like(lab_all, -1)]), **kw2)
                (x0_c, x0_u), (eps_c, eps_u) = x0_2.chunk(2), eps_2.chunk(2)
                x0, eps = x0_u + w * (x0_c - x0_u), eps_u + w * (eps_c - eps_u)
            if int(t[0]) < weak_from:
                return x0, eps
            x0_w, eps_w = weak(x, t, x_self)
            return x0 + w_weak * (x0_c - x0_w), eps + w_weak * (eps_c - eps_w)

        fn.self_conditioning = dn.self_conditioning
        fn.alphas_cumprod, fn.noise = dn.alphas_cumprod, dn.noise
    if args.image_guidance:
        if lab_all is None:
            sys.exit("error: --image-guidance needs a label-conditioned model")
        from vidiff.diffusion.guidance import image_guidance

        try:
            idn = VideoPipeline.from_pretrained(args.image_model, device=str(device)).denoiser
        except VidiffError as e:
            sys.exit(f"error: {e}")

        rng = tuple(args.image_guidance_range) if args.image_guidance_range else None
        fn = image_guidance(fn, idn, lab_all, args.image_guidance, rng)
        lo, hi = rng or (0, 0)
        guided += (f", image guidance {args.image_guidance:g} ({args.image_model}"
                   f"{f', {lo} <= t <= {hi}' if rng else ''})")
    if edn is not None:
        guided += f", {args.expert} at t > {args.expert_above}"
    if args.first_frame:
        if lab_all is None:
            sys.exit("error: --first-frame needs a label-conditioned model")
        from vidiff.diffusion.guidance import reconstruction_guidance
        from vidiff.diffusion.masks import frames_mask

        try:
            ipipe = VideoPipeline.from_pretrained(args.first_frame, device=str(device))
        except VidiffError as e:
            sys.exit(f"error: {e}")
        gi = torch.Generator().manual_seed(args.seed + 1)
        with torch.no_grad():
            first = ipipe(num_videos=args.num, num_inference_steps=args.steps, sampler=args.sampler, generator=gi,
                          progress=False, labels=lab_all, guidance_scale=args.guidance,
                          image_guidance=0.0).videos.to(device)  # (N, C, 1, H, W)
        known = first.expand(-1, -1, shape[2], -1, -1)  # (N, C, F, H, W): only frame 0 counts
        if args.first_frame_method == "clean":
            from vidiff.diffusion.guidance import clean_context

            base["dn"] = clean_context(dn, known, frames_mask([0], shape[2]).to(device))
            guided += f", first frame from {args.first_frame} (given clean)"
        else:
            fn = reconstruction_guidance(fn, known, frames_mask([0], shape[2]).to(device), args.first_frame_weight, g)
            guided += f", first frame from {args.first_frame} (reconstruction guidance {args.first_frame_weight:g})"
    if args.motion_boost:
        from vidiff.diffusion.guidance import motion_boost

        fn = motion_boost(fn, args.motion_boost, args.motion_boost_above)
        guided += f", motion boost {args.motion_boost:g} at t >= {args.motion_boost_above}"
    if args.dynamic_threshold is not None:
        from vidiff.diffusion.guidance import dynamic_threshold

        fn = dynamic_threshold(fn, args.dynamic_threshold)
        guided += f", dynamic thresholding at {args.dynamic_threshold:g}"
    trajectory = []

    def keep_estimate(state):
        if state["i"] % 5 == 0 or state["i"] == args.steps - 1:
            trajectory.append((state["t"], state["x0"].to(torch.float16).cpu()))

    with torch.no_grad():
        v = sample(fn, shape, dn.alphas_cumprod, sampler=args.sampler, num_steps=args.steps, generator=g, eta=args.eta,
                   x_T=x_T, noise=dn.noise,
                   callback=keep_estimate if args.trajectory else None)
        if args.refine:
            import math

            from vidiff.denoise import denoise_timesteps
            from vidiff.diffusion.samplers import SAMPLERS
            from vidiff.diffusion.schedules import q_sample

            t_start = min(dn.num_timesteps - 1, round(args.refine * (dn.num_timesteps - 1)))
            kw = {"eta": args.eta} if args.sampler == "ddim" else {}
            for _ in range(args.refine_times):
                noise = dn.noise.draw(v.shape, g, "cpu").to(device)
                x_t = q_sample(v, dn.alphas_cumprod[t_start].float().expand(v.shape[0]).to(device), noise)
                v = SAMPLERS[args.sampler](fn, x_t, dn.alphas_cumprod, denoise_timesteps(
                    t_start, max(1, math.ceil(args.steps * args.refine))), generator=g,
                    noise=dn.noise, **kw)
            guided += f", refined {args.refine_times}x from t = {t_start}"
        if autoencoder is not None:
            v = autoencoder.decode(v).clamp(-1, 1)
        v = v.float().cpu()
    if args.grid:
        import numpy as np

        from vidiff.io import frame_grid, to_frames, write_image

        write_image(args.grid, frame_grid(np.stack([to_frames(x) for x in v[:8]])), upscale=4)
    if args.save:
        import numpy as np

        np.savez_compressed(args.save, videos=v.clamp(-1, 1).half().numpy(),
                            **({} if labels is None else {"labels": labels.cpu().numpy()}))
    if args.trajectory:  # (latent runs: the estimates are latents)
        import numpy as np

        np.savez_compressed(args.trajectory, x0=torch.stack([x for _, x in trajectory], 1).numpy(),
                            t=np.array([int(t) for t, _ in trajectory]),
                            **({} if labels is None else {"labels": labels.cpu().numpy()}))
    empty, speed = motion(v)
    which = object_motion(v.clamp(-1, 1))[0]
    sc = "" if not dn.self_conditioning else f", self-conditioning {args.self_cond}" + (
        f" below t = {args.self_cond_below}" if args.self_cond_below is not None else "")
    eta = f" eta {args.eta:g}" if args.sampler == "ddim" else ""
    print(f"{weights} {args.sampler}{eta} {args.steps} steps{sc}{guided}, eps / {lam:g}, {args.num} samples, seed {args.seed}: "
          f"empty {empty:.3f} persistence {persistence(v)[0]:.3f} colour drift {colour_drift(v):.3f} "
          f"speed {speed:.2f}; empty clips {[i for i in range(args.num) if which[i]]}")
    area = object_pixels(v)
    print(f"speed: {profile_text(v)}")
    print(f"objects per clip {objects_per_clip(v):.2f}; object pixels {area:.3f} of all (real clips ~0.096); "
          f"{colour_share_text(v)}; distance of an object from the frame's centre {centre_distance(v):.2f} px "
          f"(real clips ~7.9)")
    if dn.num_labels:
        from sample_checks import asked_text

        from vidiff.data import build_dataset

        ev = build_dataset(cfg.data, "eval")
        n = min(256, len(ev))
        print(asked_text(v, labels.cpu(), torch.stack([ev[i]["video"] for i in range(n)]),
                         torch.stack([ev.labels(i) for i in range(n)])))


if __name__ == "__main__":
    main()
