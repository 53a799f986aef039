"""VideoPipeline: load a trained run (or a shipped model) and generate videos.

    pipe = VideoPipeline.from_pretrained("runs/demo")          # config.json + model.safetensors
    out = pipe(num_videos=4, num_inference_steps=50, generator=torch.Generator().manual_seed(0))
    write_video("out.mp4", out.videos[0], fps=8)                # out.videos: (N, C, F, H, W) in [-1, 1]

A label-conditioned model (model.num_labels > 0) also takes labels, with classifier-free guidance:

    labels = pipe.labels_for(["a red circle", "a blue square and a green triangle"])   # (2, max_objects)
    out = pipe(num_videos=2, labels=labels, guidance_scale=2.0)

and, where its config names one (`sample.image_guidance`, `sample.image_model`: the demo preset and shapes32), with
guidance by an image model of the same labels in every frame (`image_guidance=0` turns it off).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from vidiff.build import build_autoencoder, build_denoiser, check_image_model, sample_shape
from vidiff.config import (DEFAULT_SAMPLER, RunConfig, default_steps,
                           load_config)
from vidiff.diffusion import SAMPLERS, sample
from vidiff.diffusion.guidance import (classifier_free_guidance, image_guidance as image_guided, masked_model_denoise,
                                      motion_boost as boost_motion)
from vidiff.errors import CheckpointError, ConfigError, VidiffError
from vidiff.io import to_frames
from vidiff.training.checkpoint import CONFIG, SHIPPED, WEIGHTS, load_into, load_tensors, resolve_run  # noqa: F401
from vidiff.training.loop import resolve_device

@dataclass
class VideoPipelineOutput:
    videos: torch.Tensor  # (N, C, F, H, W) float in [-1, 1]

    def frames(self) -> np.ndarray:
        """uint8 (N, F, H, W, 3), the layout of video files and of samples.npy."""
        return np.stack([to_frames(v) for v in self.videos])


class VideoPipeline:
    def __init__(self, denoiser, config: RunConfig, device: torch.device, run_dir: Optional[Path] = None,
                 autoencoder=None):
        self.denoiser = denoiser.to(device).eval()
        # latent diffusion: samples are latents, decoded to pixels by this frozen autoencoder
        self.autoencoder = autoencoder if autoencoder is not None else build_autoencoder(config)
        if self.autoencoder is not None:
            self.autoencoder.to(device)
        self.config = config
        self.device = device
        self.run_dir = run_dir  # where it was loaded from (None if built in memory)
        self._image_denoisers = {}  # image models of image guidance, loaded when first used

    @property
    def video_channels(self) -> int:
        """Channels of the videos it makes (the latent channels of a latent model are inside)."""
        return self.config.model.in_channels if self.autoencoder is None else self.autoencoder.config.in_channels

    @classmethod
    def from_pretrained(cls, path_or_name: str | Path, device: str = "auto") -> "VideoPipeline":
        run = resolve_run(path_or_name)
        cfg = load_config(run / CONFIG)
        denoiser = build_denoiser(cfg)
        load_into(denoiser.net, load_tensors(run / WEIGHTS), f"{run / WEIGHTS}")
        return cls(denoiser, cfg, resolve_device(device), run)

    @torch.no_grad()
    def __call__(self, num_videos: int = 1, num_inference_steps: Optional[int] = None, sampler: str = DEFAULT_SAMPLER,
                 eta: float = 0.0, generator: Optional[torch.Generator] = None, batch_size: int = 16,
                 progress: bool = True, labels: Optional[torch.Tensor] = None,
                 guidance_scale: Optional[float] = None, motion_boost: float = 0.0,
                 guidance_below: Optional[int] = None,
                 guidance_per_label: Optional[float] = None,
                 guidance_rescale: float = 0.0, image_guidance: Optional[float] = None,
                 image_model: Optional[str] = None) -> VideoPipelineOutput:
        """`labels` (num_videos, L) long (-1: empty slot), for a label-conditioned model: each video shows its
        labels, with classifier-free guidance of weight `guidance_scale` (None: the model's `sample.guidance`, 2
        unless its config says otherwise; 1.5 for the demo preset), plus `guidance_per_label` for each label past the
        first (None: the model's `sample.guidance_per_label`, 0 for the demo preset and shapes32; 0.5 guides a video
        asked for two objects at 2.5 where one asked for one is guided at 2). Without labels such a model samples
        unconditionally. `guidance_below`: guide only at timesteps <= it (the conditional model alone above: objects
        of the right size, docs/benchmarks.md, tenth round). `guidance_rescale` (phi in [0, 1]): bring the guided
        estimate's mean and std back towards the conditional one's (Lin et al. 2023; `classifier_free_guidance`'s
        `rescale`). `motion_boost` > 0 pushes the estimates of the noisier
        half of the steps away from a clip without motion (`vidiff.diffusion.guidance.motion_boost`): faster
        objects, a little less persistence. `image_guidance` (with labels): push every frame along the classifier-free
        direction of the image model `image_model` (`vidiff.diffusion.guidance.image_guidance`; None: the model's
        `sample.image_guidance` and `sample.image_model`, 1 and shapes32-image for the demo preset), so that
        each frame shows every asked object."""
        if sampler not in SAMPLERS:
            raise VidiffError(f"unknown sampler {sampler!r}; choose from {', '.join(sorted(SAMPLERS))}")
        T = self.denoiser.num_timesteps
        num_inference_steps = default_steps(T, sampler) if num_inference_steps is None else num_inference_steps
        if not 1 <= num_inference_steps <= T:
            raise VidiffError(f"number of steps must be between 1 and {T}, got {num_inference_steps}")
        if num_videos < 1:
            raise VidiffError(f"number of videos must be >= 1, got {num_videos}")
        if motion_boost < 0:
            raise VidiffError(f"motion boost must be >= 0, got {motion_boost}")
        if guidance_scale is None:
            guidance_scale = self.config.sample.guidance
        if guidance_per_label is None:
            guidance_per_label = self.config.sample.guidance_per_label
        if not 0 <= guidance_rescale <= 1:
            raise VidiffError(f"guidance rescale must be between 0 and 1, got {guidance_rescale}")
        image_guidance = self.config.sample.image_guidance if image_guidance is None else image_guidance
        image_model = image_model or self.config.sample.image_model
        if image_guidance < 0:
            raise VidiffError(f"image guidance must be >= 0, got {image_guidance}")
        if image_guidance and labels is not None and not image_model:
            raise VidiffError("image guidance needs an image model (image_model=, or the config's sample.image_model)")
        if labels is not None:
            if not self.denoiser.num_labels:
                raise VidiffError("this model was trained without labels (model.num_labels = 0): it cannot take any")
            labels = torch.as_tensor(labels, dtype=torch.long)
            if labels.ndim != 2 or labels.shape[0] != num_videos:
                raise VidiffError(f"labels must be (num_videos, slots) = ({num_videos}, ...), "
                                  f"got {tuple(labels.shape)}")
            if labels.numel() and not (-1 <= labels.min() and labels.max() < self.denoiser.num_labels):
                raise VidiffError(f"labels must lie in -1..{self.denoiser.num_labels - 1}")
        from tqdm.auto import tqdm

        videos = []
        chunks = range(0, num_videos, batch_size)
        for start in tqdm(chunks, desc="videos", disable=not progress or len(chunks) == 1):
            n = min(batch_size, num_videos - start)
            shape = sample_shape(self.config, n, self.autoencoder)
            denoise = masked_model_denoise(self.denoiser) if self.config.masks.enabled else self.denoiser
            if labels is not None:
                denoise = classifier_free_guidance(denoise, labels[start:start + n], guidance_scale, guidance_below,
                                                   per_label=guidance_per_label, rescale=guidance_rescale)
                if image_guidance:
                    denoise = image_guided(denoise, self.image_denoiser(image_model), labels[start:start + n],
                                           image_guidance)
            if motion_boost:
                denoise = boost_motion(denoise, motion_boost, min_t=T // 2)
            x = sample(denoise, shape, self.denoiser.alphas_cumprod, sampler=sampler, num_steps=num_inference_steps,
                       eta=eta, generator=generator, device=self.device, progress=progress, noise=self.denoiser.noise)
            videos.append(x if self.autoencoder is None else self.autoencoder.decode(x).clamp(-1, 1))
        return VideoPipelineOutput(videos=torch.cat(videos).cpu())

    def image_denoiser(self, name: str):
        """The image model `name` (a run folder or a shipped name) of image guidance, on this pipeline's device;
        it must take this model's labels and frames."""
        if name not in self._image_denoisers:
            try:
                check_image_model(self.config, name)
            except ConfigError as e:
                raise ConfigError(f"{e} (image guidance 0 samples without it)") from None
            image = VideoPipeline.from_pretrained(name, device=str(self.device))
            self._image_denoisers[name] = image.denoiser
        return self._image_denoisers[name]

    def labels_for(self, captions: list[str]) -> torch.Tensor:
        """Captions in the dataset's words ("a red circle and a blue square") -> labels (N, max_objects); for a
        model trained on class folders, class names ("cats") -> labels (N, 1)."""
        from vidiff.data.shapes import parse_caption

        if not self.denoiser.num_labels:
            raise VidiffError("this model was trained without labels (model.num_labels = 0): it cannot take a caption")
        classes = self.config.data.classes
        if classes:
            lower = [c.lower() for c in classes]
            out = []
            for text in captions:
                name = " ".join(text.split()).lower()
                if name not in lower:
                    raise VidiffError(f"unknown class {text!r}: this model knows {', '.join(classes)}")
                out.append([lower.index(name)])
            return torch.tensor(out, dtype=torch.long)
        m = self.config.data.max_objects
        out = torch.full((len(captions), m), -1, dtype=torch.long)
        for i, text in enumerate(captions):
            try:
                k = parse_caption(text, m)
            except ValueError as e:
                raise VidiffError(str(e)) from None
            out[i, :len(k)] = torch.tensor(k)
        return out

    def dataset_labels(self, num: int, seed: int = 0) -> torch.Tensor:
        """The labels of `num` random held-out clips of the training dataset (N, max_objects): videos sampled
        with them show objects as often as the data does. A model trained on class folders: random classes (N, 1),
        without reading the videos."""
        import numpy as np

        from vidiff.data import build_dataset

        rng = np.random.default_rng([seed, 7])
        if self.config.data.classes:
            return torch.as_tensor(rng.integers(len(self.config.data.classes), size=(num, 1)), dtype=torch.long)
        data = build_dataset(self.config.data, "eval")
        index = rng.choice(len(data), size=num, replace=num > len(data))
        return torch.stack([data.labels(int(i)) for i in index])

    def captions_for(self, labels: torch.Tensor) -> list[str]:
        """Labels (N, L) -> what each video was asked to show: class names, or captions in the dataset's words."""
        from vidiff.data.shapes import labels_caption

        classes = self.config.data.classes
        if classes:
            return [" and ".join(classes[int(k)] for k in row if k >= 0) for row in labels]
        return [labels_caption(k) for k in labels]

    # One model, many tasks (vidiff.tasks): each returns videos (B, C, F, H, W) in [-1, 1].
    def predict(self, context, num_future: int, **kwargs) -> torch.Tensor:
        """The context frames (C, Fc, H, W) followed by `num_future` generated frames."""
        from vidiff.tasks import predict

        return predict(self, context, num_future, **kwargs)

    def interpolate(self, keyframes, positions=None, **kwargs) -> torch.Tensor:
        from vidiff.tasks import interpolate

        return interpolate(self, keyframes, positions, **kwargs)

    def upsample_time(self, video, factor: int, **kwargs) -> torch.Tensor:
        from vidiff.tasks import upsample_time

        return upsample_time(self, video, factor, **kwargs)

    def animate(self, image, **kwargs) -> torch.Tensor:
        from vidiff.tasks import animate

        return animate(self, image, **kwargs)

    def inpaint(self, video, region, **kwargs) -> torch.Tensor:
        from vidiff.tasks import inpaint

        return inpaint(self, video, region, **kwargs)

    def vary(self, video, strength: float = 0.5, **kwargs) -> torch.Tensor:
        from vidiff.tasks import vary

        return vary(self, video, strength, **kwargs)

    def extend(self, num_frames: int, video=None, **kwargs) -> torch.Tensor:
        from vidiff.tasks import extend

        return extend(self, num_frames, video, **kwargs)
