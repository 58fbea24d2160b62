"""Sensor factors: how the camera acquires the rendered scene (cuelab.sensor applies them).

Every default is the identity: a row that leaves the sensor factors alone gets the clean render.
"""

from __future__ import annotations

from .base import Factor

DEMOSAIC = ("none", "bilinear", "malvar")  # none: no Bayer mosaic at all
RESAMPLE = ("nearest", "bilinear", "bicubic", "area", "lanczos")
CHROMA = ("4:4:4", "4:2:2", "4:2:0")

SENSOR_FACTORS = (
    # --- lens: Brown-Conrady distortion in OpenCV's convention, on normalised coordinates ------
    Factor("lens_k1", "sensor", "Radial distortion k1 (negative: barrel, positive: pincushion).",
           default=0.0, low=-0.5, high=0.5),
    Factor("lens_k2", "sensor", "Radial distortion k2 (fourth-order term).", default=0.0,
           low=-0.3, high=0.3),
    Factor("lens_p1", "sensor", "Tangential distortion p1 (lens tilted against the sensor).",
           default=0.0, low=-0.05, high=0.05),
    Factor("lens_p2", "sensor", "Tangential distortion p2.", default=0.0, low=-0.05, high=0.05),
    Factor("vignetting", "sensor", "Light fall-off towards the corners (fraction lost at the "
           "corner).", default=0.0, low=0.0, high=0.9),
    Factor("chromatic_aberration", "sensor", "Lateral chromatic aberration: red and blue "
           "channels scaled apart, displacement at the corner.", default=0.0, low=0.0, high=3.0,
           unit="px"),
    # --- optics ------------------------------------------------------------------------------
    Factor("blur_sigma", "sensor", "Defocus modelled as a Gaussian point-spread function.",
           default=0.0, low=0.0, high=5.0, unit="px"),
    Factor("motion_blur_length", "sensor", "Linear motion blur length.", default=0.0, low=0.0,
           high=20.0, unit="px"),
    Factor("motion_blur_angle", "sensor", "Direction of the motion blur.", default=0.0, low=0.0,
           high=180.0, unit="deg"),
    # --- raw sensor --------------------------------------------------------------------------
    Factor("iso", "sensor", "Sensor gain: Poisson shot noise and Gaussian read noise grow "
           "with it.", default=0, low=0, high=12800, integer=True,
           notes={"0": "noise-free ideal sensor"}),
    Factor("demosaic", "sensor", "Bayer (RGGB) mosaic and the demosaicing algorithm that "
           "undoes it.", default="none", levels=DEMOSAIC),
    # --- ISP ---------------------------------------------------------------------------------
    Factor("white_balance", "sensor", "Illuminant the camera's white balance assumes; away from "
           "the scene's 6500 K it tints the image.", default=6500.0, low=2500.0, high=12000.0,
           unit="K"),
    Factor("resample_scale", "sensor", "Downscale then upscale back by this factor "
           "(1 = untouched).", default=1.0, low=0.2, high=1.0, unit="x"),
    Factor("resample_method", "sensor", "Interpolation used for resampling.",
           default="bilinear", levels=RESAMPLE),
    Factor("jpeg_quality", "sensor", "JPEG quality of the final image.", default=0, low=0,
           high=100, integer=True, notes={"0": "no JPEG (lossless)"}),
    Factor("jpeg_subsampling", "sensor", "JPEG chroma subsampling.", default="4:2:0",
           levels=CHROMA),
)
