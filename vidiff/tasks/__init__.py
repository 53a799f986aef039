"""Tasks on top of one trained model: prediction, interpolation, image-to-video, inpainting, variation, extension."""

from vidiff.tasks.generate import (METHODS, animate, conditional_sample, extend, fill_timeline, inpaint, interpolate,
                                   predict, upsample_time, vary)

__all__ = ["METHODS", "animate", "conditional_sample", "extend", "fill_timeline", "inpaint", "interpolate", "predict",
           "upsample_time", "vary"]
