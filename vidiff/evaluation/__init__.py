"""Measuring runs: video metrics, FVD under a written-down protocol, the shapes classifier, HTML reports.

    from vidiff.evaluation import psnr, ssim, frechet_distance, flicker, warping_error
    from vidiff.evaluation.evaluate import evaluate_run   # what `vidiff eval` runs
    from vidiff.evaluation.report import build_report     # what `vidiff report` runs
"""

from vidiff.evaluation.metrics import (as_videos, feature_statistics, flicker, frechet_distance,
                                       frechet_distance_from_statistics, psnr, ssim, warping_error)

__all__ = ["as_videos", "feature_statistics", "flicker", "frechet_distance", "frechet_distance_from_statistics",
           "psnr", "ssim", "warping_error"]
