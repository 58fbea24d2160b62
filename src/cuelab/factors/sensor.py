"""Sensor factors: how the camera acquires the rendered scene (cuelab.sensor applies them).

Every default is the identity: a row that leaves the sensor factors alone gets the clean render.
"""

from __future__ import annotations

from .base import Factor
from .scene import SCENE_FACTORS

# The scene's default light: the renders are neutral under it, so a camera white-balanced for it
# changes nothing (the camera simulation reads this default as the scene's illuminant).
NEUTRAL_K = next(f.default for f in SCENE_FACTORS if f.name == "light_temperature")

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
    Factor("motion_blur_length", "sensor", "Linear motion blur: how far the image moves while "
           "the shutter is open (sub-pixel lengths blur too).", default=0.0, low=0.0, high=20.0,
           unit="px"),
    Factor("motion_blur_angle", "sensor", "Direction of the motion blur, counter-clockwise from "
           "horizontal (180 is the same line as 0); only with a motion_blur_length.", default=0.0,
           low=0.0, high=180.0, unit="deg"),
    # --- raw sensor --------------------------------------------------------------------------
    Factor("prnu", "sensor", "Photo-response non-uniformity: each photosite's gain differs from "
           "1 by a fixed amount, with this standard deviation (per photosite and colour, in the "
           "camera's RGB, on the light collected before shot and read noise). A fixed pattern "
           "of the sensor, the same in every image of a given size.", default=0.0, low=0.0,
           high=0.1, notes={"0": "a perfectly uniform sensor"}),
    Factor("iso", "sensor", "Sensor gain: Poisson shot noise and Gaussian read noise grow "
           "with it.", default=0, low=0, high=12800, integer=True,
           notes={"0": "noise-free ideal sensor"}),
    Factor("demosaic", "sensor", "Bayer (RGGB) mosaic and the demosaicing algorithm that "
           "undoes it.", default="none", levels=DEMOSAIC),
    # --- ISP ---------------------------------------------------------------------------------
    Factor("white_balance", "sensor", "Illuminant the camera's white balance assumes; away from "
           f"the scene's {NEUTRAL_K:g} K it tints the image.", default=NEUTRAL_K, low=2500.0,
           high=12000.0, unit="K"),
    Factor("resample_scale", "sensor", "Downscale then upscale back by this factor "
           "(1 = untouched).", default=1.0, low=0.2, high=1.0, unit="x"),
    Factor("resample_method", "sensor", "Interpolation used for resampling; only with a "
           "resample_scale.", default="bilinear", levels=RESAMPLE),
    Factor("jpeg_quality", "sensor", "JPEG quality of the final image.", default=0, low=0,
           high=100, integer=True, notes={"0": "no JPEG (lossless)"}),
    Factor("jpeg_subsampling", "sensor", "JPEG chroma subsampling; only with a jpeg_quality.",
           default="4:2:0", levels=CHROMA),
)
