"""Quick checks of a run's samples, used in docs/benchmarks.md ("The 11-minute demo: what was tried").

    python bench/sample_checks.py RUN [--threads 2] [--no-memorisation]

- persistence: per video, the fewest object pixels (max channel > 0.5 on [0, 1]) in a frame over the most,
  averaged over 32 samples (`vidiff sample`'s default sampler, DDPM 100 steps, seed 0, unless
  --num/--steps/--sampler/--eta/--seed; the tables of docs/benchmarks.md before its "Fourth round" used DDIM 25 steps,
  `shapes32`'s first table DDPM 250); objects that vanish
  mid-clip pull it down. Printed with the same score for 64 held-out real clips. Also the std over frames
  of the mean object colour.
- empty: the fraction of samples with no object pixels at all (real clips always hold 1 to max_objects).
- speed (`vidiff.evaluation.metrics.object_motion`): the centroid of a clip's object pixels per frame; the mean
  |c[f+1] - c[f]| in pixels per frame over all pairs of consecutive frames with objects, pooled over clips
  ("frozen blobs" score near 0; each real object moves at 0.5 to 1.5 px/frame).
- colour drift (`vidiff.evaluation.metrics.colour_drift`): object pixels labelled with the nearest colour of
  the dataset's palette; per frame, the total-variation distance between that frame's colour histogram and
  the clip's mean histogram, averaged (0: every frame shows the same colours in the same proportions).
- colour share: the fraction of all object pixels nearest to each palette colour
  (`vidiff.evaluation.metrics.colour_frequencies`), against 256 held-out real clips, and the total-variation
  distance between the two (0: the samples show the palette's colours as often as real clips do).
- objects per clip: the mean number of palette colours with at least 10 object pixels per frame in a clip (each
  object of a real clip has its own colour; an object whose colour drifts counts twice).
- label-conditioned models (model.num_labels > 0): each sample asks for the labels of a random held-out clip
  (`VideoPipeline.dataset_labels`), with classifier-free guidance --guidance. The shipped shapes classifier
  (`vidiff.evaluation.classifier`) then says whether a sample shows exactly the asked colours, and, per asked
  object, the asked shape; printed with its score on real clips (their own labels). Of the clips asked for two or
  more objects: the share that shows every asked colour (>= 5 pixels) in every frame, i.e. no object merged into
  another or faded out (`asked_kept`), and the stricter share that shows each asked colour as exactly one piece in
  every frame, i.e. no object drawn in fragments either (`asked_kept(whole=True)`, `metrics.colour_pieces`).
- centre distance: the mean distance in pixels of each colour's centroid from the frame's centre
  (`vidiff.evaluation.metrics.colour_centroids`): samples whose objects crowd the middle score below real clips.
- memorisation: for 16 samples, the MSE to the nearest training clip (first 2000 clips of the train split),
  against the same for 16 held-out real clips.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vidiff.config import DEFAULT_GUIDANCE, DEFAULT_SAMPLER, SAMPLER_NAMES  # noqa: E402


def persistence(v: torch.Tensor) -> tuple[float, float]:
    """v: (N, C, F, H, W) in [-1, 1] -> (persistence, colour std over frames)."""
    b = (v.clamp(-1, 1) + 1) / 2
    obj = (b.max(1, keepdim=True).values > 0.5).float()  # (N, 1, F, H, W)
    mass = obj.sum((1, 3, 4))  # (N, F) object pixels per frame
    pers = (mass.min(1).values / mass.max(1).values.clamp(min=1)).mean().item()
    colour = (b * obj).sum((3, 4)) / obj.sum((3, 4)).clamp(min=1)  # (N, C, F)
    return pers, colour.std(2).mean().item()


def object_pixels(v: torch.Tensor) -> float:
    """v: (N, C, F, H, W) in [-1, 1] -> the share of all pixels that are object pixels (brightest channel > 0.5 on
    [0, 1]): guidance draws objects larger than real (docs/benchmarks.md, tenth round)."""
    return float((v.clamp(-1, 1).amax(1) > 0).float().mean())


def motion(v: torch.Tensor) -> tuple[float, float]:
    """v: (N, C, F, H, W) in [-1, 1] -> (fraction of clips without objects, centroid speed in pixels per frame,
    pooled over all pairs of consecutive frames with objects)."""
    from vidiff.evaluation.metrics import object_motion

    empty, speed, pairs = object_motion(v.clamp(-1, 1))
    return float(empty.mean()), float((speed * pairs).sum() / max(pairs.sum(), 1))


def speed_profile(v: torch.Tensor) -> list[float]:
    """v: (N, C, F, H, W) in [-1, 1] -> the centroid speed (px/frame) of each of the F - 1 pairs of consecutive
    frames, pooled over the clips with object pixels in both frames: where along a clip objects slow down."""
    from vidiff.evaluation.metrics import centroid_steps

    step, both, _ = centroid_steps(v.clamp(-1, 1))  # (N, F - 1) each
    return ((step * both).sum(0) / np.maximum(both.sum(0), 1)).tolist()


def profile_text(v: torch.Tensor) -> str:
    s = speed_profile(v)
    if not s:
        return "none (single frames)"
    return (f"first / last pair {s[0]:.2f} / {s[-1]:.2f}, the others {sum(s[1:-1]) / max(len(s) - 2, 1):.2f} "
            f"(per pair: {' '.join(f'{x:.2f}' for x in s)})")


def colour_share_text(v: torch.Tensor, real: torch.Tensor | None = None) -> str:
    """The share of object pixels per palette colour (`metrics.colour_frequencies`), with real clips' in brackets
    and the total-variation distance between the two when `real` is given."""
    from vidiff.data.shapes import COLOR_NAMES
    from vidiff.evaluation.metrics import colour_frequencies

    fs = colour_frequencies(v.clamp(-1, 1))
    if real is None:
        return "colour share " + ", ".join(f"{n} {a:.2f}" for n, a in zip(COLOR_NAMES, fs)) + \
            f" (uniform: {1 / len(fs):.2f})"
    fr = colour_frequencies(real.clamp(-1, 1))
    return ("colour share of object pixels: " + ", ".join(f"{n} {a:.2f} ({b:.2f})" for n, a, b in zip(COLOR_NAMES, fs, fr))
            + f"; distance to real (TV) {0.5 * abs(fs - fr).sum():.3f}")


def objects_per_clip(v: torch.Tensor) -> float:
    """The mean number of palette colours with >= 10 object pixels per frame in a clip (objects, in `shapes`)."""
    from vidiff.evaluation.metrics import colour_pixels

    return float((colour_pixels(v.clamp(-1, 1)) >= 10).sum(1).mean())


def colour_drift(v: torch.Tensor) -> float:
    from vidiff.evaluation.metrics import colour_drift as drift

    return float(drift(v.clamp(-1, 1)).mean())


def centre_distance(v: torch.Tensor, min_pixels: int = 5) -> float:
    """v: (N, C, F, H, W) in [-1, 1] -> the mean distance in pixels of each colour's centroid (each object of a
    `shapes` clip has its own colour) from the frame's centre, over every (clip, frame, colour) with at least
    `min_pixels` pixels: samples whose objects crowd the middle of the frame score below real clips."""
    from vidiff.evaluation.metrics import colour_centroids

    c, mass = colour_centroids(v.clamp(-1, 1))  # (N, F, K, 2), (N, F, K)
    mid = np.array([(v.shape[-2] - 1) / 2, (v.shape[-1] - 1) / 2])
    d = np.linalg.norm(c - mid, axis=-1)  # (N, F, K)
    keep = mass >= min_pixels
    return float(d[keep].mean()) if keep.any() else float("nan")


def asked_kept(v: torch.Tensor, labels: torch.Tensor, min_pixels: int = 5,
               whole: bool = False) -> tuple[float, float, int]:
    """Whether clips asked for two or more objects keep every asked object apart in its own colour: v (N, C, F, H, W)
    in [-1, 1], labels (N, L) indices into `shapes.LABELS` -> (the fraction of those clips in which every asked
    colour has at least `min_pixels` object pixels in every frame, the same over (clip, frame) pairs, the number of
    those clips). Two objects merged into one blob of one colour, or one that fades out, fail it; real clips fail it
    only where one object hides another. `whole`: stricter, each asked colour must also be exactly one piece
    (`metrics.colour_pieces`, pieces of 3+ pixels) in every frame, so an object drawn in fragments fails too."""
    from vidiff.evaluation.classifier import asked_attributes
    from vidiff.evaluation.metrics import colour_pieces, colour_pixels

    present = asked_attributes(labels)["present"].numpy()  # (N, K) bool
    multi = present.sum(1) >= 2
    if not multi.any():
        return float("nan"), float("nan"), 0
    vm = v[torch.from_numpy(multi)].clamp(-1, 1)
    shown = colour_pixels(vm, per_frame=True) >= min_pixels  # (M, F, K)
    if whole:
        shown &= colour_pieces(vm) == 1
    ok = (shown | ~present[multi][:, None, :]).all(-1)  # (M, F): every asked colour shown
    return float(ok.all(1).mean()), float(ok.mean()), int(multi.sum())


def asked_text(v: torch.Tensor, labels: torch.Tensor, real: torch.Tensor, real_labels: torch.Tensor) -> str:
    """How often label-conditioned samples show what they were asked for, by the shipped shapes classifier,
    against the same score of real clips with their own labels."""
    from vidiff.errors import VidiffError
    from vidiff.evaluation.classifier import (asked_attributes, attribute_accuracy, load_shapes_classifier,
                                              predict_attributes)

    clf = load_shapes_classifier()
    try:
        got = attribute_accuracy(predict_attributes(clf, v.clamp(-1, 1)), asked_attributes(labels))
    except VidiffError as e:  # clips the classifier does not take, e.g. an image model's single frames
        return f"asked labels: not scored ({e})"
    ref = attribute_accuracy(predict_attributes(clf, real), asked_attributes(real_labels))
    kept, kept_frames, n = asked_kept(v, labels)
    kept_real, kept_frames_real, n_real = asked_kept(real, real_labels)
    whole, whole_frames, _ = asked_kept(v, labels, whole=True)
    whole_real, whole_frames_real, _ = asked_kept(real, real_labels, whole=True)
    return (f"asked labels: colours exactly right {got['colors']:.3f} (real {ref['colors']:.3f}); "
            f"asked shape right {got['shape']:.3f} per object (real {ref['shape']:.3f}); "
            f"clips asked for 2+ objects showing every asked colour in every frame {kept:.3f} of {n} "
            f"(real {kept_real:.3f} of {n_real}), in {kept_frames:.3f} of their frames (real {kept_frames_real:.3f}); "
            f"each asked colour in one piece in every frame {whole:.3f} (real {whole_real:.3f}), in {whole_frames:.3f} "
            f"of their frames (real {whole_frames_real:.3f})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=None, help="default: the sampler's, as `vidiff sample`")
    p.add_argument("--sampler", default=DEFAULT_SAMPLER, choices=SAMPLER_NAMES)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eta", type=float, default=0.0)
    p.add_argument("--num", type=int, default=32, help="samples to draw (the scores are noisy below ~100)")
    p.add_argument("--samples", help="score this samples.npy (uint8 (N, F, H, W, 3), as `vidiff sample` writes) "
                   "instead of drawing new samples; RUN still names the data config")
    p.add_argument("--guidance", type=float, default=DEFAULT_GUIDANCE,
                   help=f"label-conditioned models: classifier-free guidance weight (default: {DEFAULT_GUIDANCE:g})")
    p.add_argument("--guidance-per-label", type=float, default=None, metavar="W",
                   help="added to --guidance for each asked label past the first, as vidiff sample does (default: "
                        "the model's sample.guidance_per_label; the twenty-fourth and twenty-fifth rounds used 1 for "
                        "every model, the rounds before 0)")
    p.add_argument("--guidance-below", type=int, default=None, metavar="T",
                   help="guide only at timesteps <= T (a guidance interval; default: every step)")
    p.add_argument("--no-memorisation", action="store_true", help="skip the nearest-training-clip check")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from vidiff import VideoPipeline
    from vidiff.data import build_dataset

    pipe = VideoPipeline.from_pretrained(args.run)
    cfg = pipe.config
    if args.samples:
        import numpy as np

        u8 = torch.from_numpy(np.load(args.samples))  # (N, F, H, W, 3)
        v = u8.permute(0, 4, 1, 2, 3).float() / 127.5 - 1  # (N, C, F, H, W)
    labels = pipe.dataset_labels(args.num, args.seed) if pipe.denoiser.num_labels else None
    if not args.samples:
        v = pipe(num_videos=args.num, num_inference_steps=args.steps, sampler=args.sampler, eta=args.eta,
                 generator=torch.Generator().manual_seed(args.seed), progress=False, labels=labels,
                 guidance_scale=args.guidance, guidance_below=args.guidance_below,
                 guidance_per_label=args.guidance_per_label).videos
    ev = build_dataset(cfg.data, "eval")
    real = torch.stack([ev[i]["video"] for i in range(min(64, len(ev)))])
    (ps, cs), (pr, cr) = persistence(v), persistence(real)
    print(f"persistence {ps:.3f} (real {pr:.3f}); colour std over frames {cs:.3f} (real {cr:.3f}); "
          f"colour drift {colour_drift(v):.3f} (real {colour_drift(real):.3f})")
    (es, ss), (er, sr) = motion(v), motion(real)
    print(f"empty {es:.3f} (real {er:.3f}); centroid speed {ss:.2f} px/frame (real {sr:.2f})")
    many = torch.stack([ev[i]["video"] for i in range(min(256, len(ev)))])
    print(colour_share_text(v, many))
    print(f"objects per clip (colours with >= 10 pixels per frame) {objects_per_clip(v):.2f} "
          f"(real {objects_per_clip(many):.2f}); object pixels {object_pixels(v):.3f} of all "
          f"(real {object_pixels(many):.3f}); distance of an object from the frame's centre "
          f"{centre_distance(v):.2f} px (real {centre_distance(many):.2f})")
    if labels is not None:
        print(asked_text(v, labels, many, torch.stack([ev.labels(i) for i in range(len(many))])))
    if args.no_memorisation:
        return

    train = build_dataset(cfg.data, "train")
    tr = torch.stack([train[i]["video"] for i in range(min(len(train), 2000))]).flatten(1)

    def nearest(x):
        return (torch.cdist(x.flatten(1), tr) ** 2 / tr.shape[1]).min(1).values.median().item()

    print(f"median MSE to the nearest training clip: samples {nearest(v[:16]):.4f}, "
          f"held-out real clips {nearest(real[:16]):.4f}")


if __name__ == "__main__":
    main()
