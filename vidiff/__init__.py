"""vidiff: video diffusion models, from a CPU to many GPUs.

Video tensors are `(B, C, F, H, W)` everywhere in the library (batch, channels, frames, height, width),
with values in [-1, 1] inside the model and diffusion code.
"""

from vidiff.errors import CheckpointError, ConfigError, VidiffError

__version__ = "0.1.0"

__all__ = ["VidiffError", "ConfigError", "CheckpointError", "VideoPipeline", "__version__"]


def __getattr__(name):  # lazy: `import vidiff` stays cheap, the pipeline pulls in torch models
    if name == "VideoPipeline":
        from vidiff.pipeline import VideoPipeline

        return VideoPipeline
    raise AttributeError(name)
