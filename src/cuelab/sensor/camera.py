"""The simulated camera: a clean render -> the image a camera would have recorded.

The camera is a declared list of stages in physical order (`STAGES`, at the end of this module):
lens (distortion, chromatic aberration, vignetting) -> optics (defocus, motion blur) -> raw sensor
(into the camera's colour space; photo-response non-uniformity, Bayer mosaic, shot and read noise
at the row's ISO, quantisation) -> ISP (demosaicing; white balance and the colour matrix, folded
into the encode) -> resampling -> JPEG. Each stage declares the factors that switch it on, the
factors that only qualify it, whether it works in linear light, and its function.

A stage runs when any of its switches differs from that factor's registry default: the registry
default is the identity, and no stage tests a value of its own. A row with every switch at its
default gets the clean render back, byte for byte; a row that only turns on linear-light stages
goes through the linear-light round trip, which alone changes no pixel by more than 1 LSB.

Geometry (distortion, resampling) is applied to the object mask too, with nearest-neighbour
sampling, so the mask keeps marking the object's pixels in the final image.

To add a sensor factor: its registry entry (cuelab.factors.sensor) and a stage here (a function
and its line in `STAGES`), or a switch of an existing stage.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from operator import itemgetter
from statistics import NormalDist
from typing import Callable

import cv2
import numpy as np

from ..color import decode_srgb8, encode_srgb8
from ..config import SensorSettings
from ..factors import REGISTRY

# A typical camera colour matrix (camera RGB -> linear sRGB; rows sum to 1 so white stays white).
# Raw noise is added in camera space, so after this matrix it is colour-correlated, as in a camera.
CCM = np.array([[1.75, -0.55, -0.20],
                [-0.28, 1.62, -0.34],
                [0.02, -0.60, 1.58]], np.float32)
CCM_INV = np.linalg.inv(CCM).astype(np.float32)
RESAMPLE = {"nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR,
            "bicubic": cv2.INTER_CUBIC, "area": cv2.INTER_AREA, "lanczos": cv2.INTER_LANCZOS4}
FOLDED = -1e6  # marks distorted pixels that no scene point reaches
JPEG_SAMPLING = {"4:4:4": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444,
                 "4:2:2": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422,
                 "4:2:0": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420}


@lru_cache(maxsize=256)
def blackbody_rgb(kelvin: float) -> tuple[float, float, float]:
    """Linear sRGB of a black body, normalised to green (Planck's law through CIE 1931
    matching functions, approximated by Wyman et al.'s multi-lobe Gaussian fit)."""
    lam = np.arange(380.0, 781.0, 5.0)
    spd = 1 / (lam ** 5 * (np.exp(1.4388e7 / (lam * kelvin)) - 1))

    def g(x, mu, s1, s2):
        return np.exp(-0.5 * ((x - mu) / np.where(x < mu, s1, s2)) ** 2)
    xbar = 1.056 * g(lam, 599.8, 37.9, 31.0) + 0.362 * g(lam, 442.0, 16.0, 26.7) \
        - 0.065 * g(lam, 501.1, 20.4, 26.2)
    ybar = 0.821 * g(lam, 568.8, 46.9, 40.5) + 0.286 * g(lam, 530.9, 16.3, 31.1)
    zbar = 1.217 * g(lam, 437.0, 11.8, 36.0) + 0.681 * g(lam, 459.0, 26.0, 13.8)
    xyz = np.array([(spd * xbar).sum(), (spd * ybar).sum(), (spd * zbar).sum()])
    xyz = xyz / xyz[1]
    rgb = np.array([[3.2406, -1.5372, -0.4986], [-0.9689, 1.8758, 0.0415],
                    [0.0557, -0.2040, 1.0570]]) @ xyz
    rgb = np.clip(rgb, 1e-6, None)
    return tuple(rgb / rgb[1])


# The illuminant the renders are neutral under: the scene's default key light (a black body at
# this temperature renders white). The number lives in one place, the light_temperature entry
# of the scene registry; white_balance's default is read from there too, so a camera left at its
# default white balance applies gains of exactly 1.
SCENE_ILLUMINANT_K = float(REGISTRY["light_temperature"].default)


def white_balance_gains(assumed_kelvin: float, scene_kelvin: float = SCENE_ILLUMINANT_K
                        ) -> np.ndarray:
    """Gains a camera applies to neutralise `assumed_kelvin`; 1 when it assumes the scene's."""
    return (np.array(blackbody_rgb(scene_kelvin)) / np.array(blackbody_rgb(assumed_kelvin))
            ).astype(np.float32)


# --- lens ----------------------------------------------------------------------------------------

def camera_matrix(h: int, w: int) -> np.ndarray:
    """Normalised coordinates: focal length = image width (r = 0.5 at the side edges)."""
    return np.array([[w, 0, (w - 1) / 2], [0, w, (h - 1) / 2], [0, 0, 1]], np.float64)


def distort_points(points: np.ndarray, k: np.ndarray, h: int, w: int) -> np.ndarray:
    """Brown-Conrady, OpenCV's convention: ideal pixel coordinates -> distorted ones."""
    k1, k2, p1, p2 = k
    K = camera_matrix(h, w)
    x = (points[..., 0] - K[0, 2]) / K[0, 0]
    y = (points[..., 1] - K[1, 2]) / K[1, 1]
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2 * r2
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return np.stack([xd * K[0, 0] + K[0, 2], yd * K[1, 1] + K[1, 2]], axis=-1)


@lru_cache(maxsize=64)
def _distortion_maps(k: tuple, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """For each pixel of the distorted output, where it comes from in the ideal image; FOLDED
    where strong barrel distortion folds over and no ideal point lands there (left black)."""
    K = camera_matrix(h, w)
    grid = np.stack(np.meshgrid(np.arange(w), np.arange(h)), -1).reshape(-1, 1, 2)
    grid = grid.astype(np.float64)
    ideal = cv2.undistortPointsIter(grid, K, np.array(k), np.eye(3), K,
                                    (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 40, 1e-6))
    back = distort_points(ideal.reshape(-1, 2), np.array(k), h, w)
    folded = np.linalg.norm(back - grid.reshape(-1, 2), axis=1) > 0.05
    ideal = ideal.reshape(-1, 2)
    ideal[folded] = FOLDED
    ideal = ideal.reshape(h, w, 2).astype(np.float32)
    return ideal[..., 0].copy(), ideal[..., 1].copy()


def distort(img: np.ndarray, mask: np.ndarray, k: tuple) -> tuple[np.ndarray, np.ndarray]:
    h, w = mask.shape
    mx, my = _distortion_maps(k, h, w)
    # beyond the frame the scene continues (replicated edge), but folded pixels stay black
    img = cv2.remap(img, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    img[mx == FOLDED] = 0
    mask = cv2.remap(mask.view(np.uint8), mx, my, cv2.INTER_NEAREST,
                     borderMode=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)
    return img, mask


@lru_cache(maxsize=64)
def _radial_grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray, float]:
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    return x - cx, y - cy, math.hypot(cx, cy)


def chromatic_aberration(img: np.ndarray, pixels: float) -> np.ndarray:
    """Lateral CA: red magnified, blue shrunk, `pixels` apart from green at the corner."""
    h, w = img.shape[:2]
    dx, dy, r_corner = _radial_grid(h, w)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    out = img.copy()
    for channel, sign in ((0, 1.0), (2, -1.0)):
        s = 1 + sign * pixels / r_corner
        out[..., channel] = cv2.remap(img[..., channel], cx + dx / s, cy + dy / s,
                                      cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return out


def vignetting(img: np.ndarray, strength: float) -> np.ndarray:
    """Fall-off growing with the squared radius; the corner loses `strength` of its light."""
    dx, dy, r_corner = _radial_grid(*img.shape[:2])
    return img * (1 - strength * (dx * dx + dy * dy) / r_corner ** 2)[..., None]


# --- optics --------------------------------------------------------------------------------------

@lru_cache(maxsize=256)
def defocus_kernel(sigma: float) -> np.ndarray:
    """Lindeberg's discrete Gaussian, e^-t I_n(t) with t = sigma^2: the kernel whose variance is
    exactly sigma^2 at every sigma, so a sub-pixel defocus blurs as much as it should. (A sampled
    Gaussian, as cv2.GaussianBlur draws it, gives a neighbour 3e-4 of the light at sigma 0.25
    instead of 0.03, and below about 0.3 px changes no 8-bit pixel at all.)"""
    from scipy.special import ive

    radius = math.ceil(6 * sigma) + 3
    kernel = ive(np.arange(-radius, radius + 1), sigma * sigma)
    kernel = kernel[kernel >= 1e-4 * kernel.max()]  # tails worth 0.03 LSB at most
    return (kernel / kernel.sum()).astype(np.float32)


def defocus(img: np.ndarray, sigma: float) -> np.ndarray:
    kernel = defocus_kernel(float(sigma))
    return cv2.sepFilter2D(img, -1, kernel, kernel, borderType=cv2.BORDER_REFLECT)


@lru_cache(maxsize=256)
def motion_kernel(length: float, angle: float) -> np.ndarray:
    """The camera moving `length` pixels at `angle` degrees (counter-clockwise from the x axis)
    while the shutter is open: the mean of the image shifted to every point of that segment,
    each sub-pixel shift by bilinear interpolation. Any length > 0 blurs (half a pixel of motion
    moves 1/16 of each pixel's light to each neighbour along the motion) and the kernel grows
    continuously from the identity at length 0. Odd-sized, centred, summing to 1."""
    n = max(64, math.ceil(length * 32))  # points along the segment (midpoint rule)
    t = ((np.arange(n) + 0.5) / n - 0.5) * length
    x = t * math.cos(math.radians(angle))
    y = -t * math.sin(math.radians(angle))  # image rows grow downwards
    r = int(np.floor(max(np.abs(x).max(), np.abs(y).max()))) + 1
    kernel = np.zeros((2 * r + 1, 2 * r + 1))
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = x - x0, y - y0
    col, row = x0.astype(int) + r, y0.astype(int) + r
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            np.add.at(kernel, (row + dy, col + dx), wy * wx)
    while len(kernel) > 1 and not (kernel[0].any() or kernel[-1].any()):
        kernel = kernel[1:-1]  # empty rows (a motion near the horizontal), kept centred
    while kernel.shape[1] > 1 and not (kernel[:, 0].any() or kernel[:, -1].any()):
        kernel = kernel[:, 1:-1]
    return (kernel / kernel.sum()).astype(np.float32)


def motion_blur(img: np.ndarray, length: float, angle: float) -> np.ndarray:
    return cv2.filter2D(img, -1, motion_kernel(length, angle), borderType=cv2.BORDER_REFLECT)


# --- raw sensor -----------------------------------------------------------------------------------

@lru_cache(maxsize=16)
def bayer_masks(h: int, w: int) -> np.ndarray:
    """(h, w, 3) one-hot: which colour each photosite of an RGGB mosaic records."""
    m = np.zeros((h, w, 3), np.float32)
    m[0::2, 0::2, 0] = 1
    m[0::2, 1::2, 1] = 1
    m[1::2, 0::2, 1] = 1
    m[1::2, 1::2, 2] = 1
    m.flags.writeable = False
    return m


PRNU_SEED = 0x5052_4E55  # the sensor's fixed pattern: one constant seed, never the row's


@lru_cache(maxsize=16)
def prnu_pattern(h: int, w: int) -> np.ndarray:
    """(h, w, 3) the fixed relative gain deviation of every photosite of every colour, zero mean
    and unit variance per channel: a property of the sensor (drawn from a constant seed per
    image size), the same in every image it takes."""
    z = np.random.default_rng([PRNU_SEED, h, w]).standard_normal((h, w, 3))
    z = (z - z.mean((0, 1))) / z.std((0, 1))
    z = z.astype(np.float32)
    z.flags.writeable = False
    return z


def photo_response(camera_rgb: np.ndarray, strength: float) -> np.ndarray:
    """Photo-response non-uniformity: each photosite converts its light with a gain of
    1 + strength * its fixed deviation (a standard deviation of `strength`, mean 1)."""
    h, w = camera_rgb.shape[:2]
    return camera_rgb * (1 + np.float32(strength) * prnu_pattern(h, w))


def sensor_gain(iso: int, s: SensorSettings) -> float:
    """Digital numbers per electron: full scale is reached with full_well * base_iso / iso."""
    return (2 ** s.bit_depth - 1) / (s.full_well * s.base_iso / iso)


@lru_cache(maxsize=1)
def _normal_quantiles() -> np.ndarray:
    """Standard-normal quantiles at the centres of 2**16 equal-probability bins, rescaled to
    unit variance: the table for drawing normal deviates from 16 random bits."""
    inv = NormalDist().inv_cdf
    q = np.array([inv((i + 0.5) / 65536) for i in range(65536)])
    q = (q / q.std()).astype(np.float32)
    q.flags.writeable = False
    return q


def standard_normal(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    """Normal deviates by inverse transform of 16 random bits: 5x faster than numpy's
    ziggurat at image sizes, with the tails cut at 4.3 sigma, far below one 8-bit level of
    any image this step writes."""
    n = math.prod(shape)
    bits = rng.bit_generator.random_raw(-(-n // 4)).view(np.uint16)[:n]
    return _normal_quantiles().take(bits).reshape(shape)


_per_thread = threading.local()


def row_bit_generator(seed: int) -> np.random.SFC64:
    """This thread's SFC64, re-keyed for one image by PractRand's own SFC64 seeding (a = b = c =
    seed, counter 1, 12 outputs discarded): 6x cheaper than a new generator through numpy's
    SeedSequence, which at 64x64 cost as much as the noise itself."""
    bits = getattr(_per_thread, "sfc64", None) or np.random.SFC64(0)
    _per_thread.sfc64 = bits
    bits.state = {"bit_generator": "SFC64", "has_uint32": 0, "uinteger": 0,
                  "state": {"state": np.array([seed, seed, seed, 1], np.uint64)}}
    bits.random_raw(12)
    return bits


# Where a photosite's shot plus read noise is less skewed than a Poisson law of mean 20
# (skewness 0.22), it is drawn as one normal of the same mean and variance; elsewhere exactly.
# The skewness of Poisson(m) + N(0, r^2) is m / (m + r^2)^1.5, at most 0.385 / r, so with the
# usual read noise (r >= 1.72 e-) no photosite needs the exact law.
MAX_SKEW = 1 / math.sqrt(20)


def _largest_skewness(read_noise: float) -> float:
    """The largest skewness of Poisson(m) + N(0, r^2) over m: at m = 2 r^2, 2 / (3^1.5 r)."""
    return 2 / (3 ** 1.5 * max(read_noise, 1e-9))


def expose(signal: np.ndarray, iso: int, s: SensorSettings, rng: np.random.Generator):
    """Relative exposure (0..1 of full scale) -> digital numbers, with shot noise (Poisson in
    the electron count), Gaussian read noise and quantisation. The photon-transfer curve has
    slope = gain."""
    gain = np.float32(sensor_gain(iso, s))
    full_scale = np.float32(2 ** s.bit_depth - 1)
    electrons = np.multiply(signal, full_scale / gain, dtype=np.float32)
    np.maximum(electrons, 0, out=electrons)
    z = standard_normal(rng, electrons.shape)
    r2 = np.float32(s.read_noise ** 2)
    noisy = cv2.add(cv2.multiply(cv2.sqrt(electrons + r2), z), electrons)  # cv2: 2x numpy here
    if _largest_skewness(s.read_noise) > MAX_SKEW:  # else no photosite needs the exact law
        skewed = electrons > MAX_SKEW * (electrons + r2) ** 1.5
        noisy[skewed] = rng.poisson(electrons[skewed]) + s.read_noise * z[skewed]
    noisy *= gain
    return np.core.umath.clip(np.rint(noisy, out=noisy), np.float32(0), full_scale, out=noisy)


def demosaic(raw: np.ndarray, method: str) -> np.ndarray:
    """RGGB mosaic (h, w) -> RGB (h, w, 3): bilinear, or Malvar-He-Cutler (2004)."""
    h, w = raw.shape
    m = bayer_masks(h, w)
    raw = raw.astype(np.float32)

    def conv(kernel):
        return cv2.filter2D(raw, -1, np.asarray(kernel, np.float32),
                            borderType=cv2.BORDER_REFLECT_101)
    g_bilinear = np.array([[0, 1, 0], [1, 4, 1], [0, 1, 0]]) / 4
    rb_bilinear = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 4
    if method == "bilinear":
        out = np.stack([cv2.filter2D(raw * m[..., c], -1,
                                     (g_bilinear if c == 1 else rb_bilinear).astype(np.float32),
                                     borderType=cv2.BORDER_REFLECT_101) for c in range(3)], -1)
        return out
    # Malvar-He-Cutler: bilinear corrected by the Laplacian of the known channel
    g_at_rb = conv(np.array([[0, 0, -1, 0, 0], [0, 0, 2, 0, 0], [-1, 2, 4, 2, -1],
                             [0, 0, 2, 0, 0], [0, 0, -1, 0, 0]]) / 8)
    rb_at_g_row = conv(np.array([[0, 0, .5, 0, 0], [0, -1, 0, -1, 0], [-1, 4, 5, 4, -1],
                                 [0, -1, 0, -1, 0], [0, 0, .5, 0, 0]]) / 8)
    rb_at_g_col = conv(np.array([[0, 0, -1, 0, 0], [0, -1, 4, -1, 0], [.5, 0, 5, 0, .5],
                                 [0, -1, 4, -1, 0], [0, 0, -1, 0, 0]]) / 8)
    rb_at_br = conv(np.array([[0, 0, -1.5, 0, 0], [0, 2, 0, 2, 0], [-1.5, 0, 6, 0, -1.5],
                              [0, 2, 0, 2, 0], [0, 0, -1.5, 0, 0]]) / 8)
    r_site, b_site = m[..., 0] > 0, m[..., 2] > 0
    g_site = m[..., 1] > 0
    row_even = (np.arange(h) % 2 == 0)[:, None] & np.ones((1, w), bool)  # red rows (RGGB)
    g_in_red_row = g_site & row_even
    g_in_blue_row = g_site & ~row_even
    r = np.where(r_site, raw, np.where(g_in_red_row, rb_at_g_row,
                                       np.where(g_in_blue_row, rb_at_g_col, rb_at_br)))
    b = np.where(b_site, raw, np.where(g_in_blue_row, rb_at_g_row,
                                       np.where(g_in_red_row, rb_at_g_col, rb_at_br)))
    g = np.where(g_site, raw, g_at_rb)
    return np.stack([r, g, b], -1)


# --- after the ISP: on the 8-bit image, as a camera's encoder sees it ----------------------------

def resample(img: np.ndarray, mask: np.ndarray, scale: float, method: str):
    """Down by `scale` (< 1) and back up. Every scale below 1 loses at least one row and column,
    so a scale within half a pixel of 1 still resamples (the nearest smaller size)."""
    h, w = mask.shape
    small = (max(1, min(w - 1, round(w * scale))), max(1, min(h - 1, round(h * scale))))
    interp = RESAMPLE[method]
    img = cv2.resize(cv2.resize(img, small, interpolation=interp), (w, h),
                     interpolation=cv2.INTER_LINEAR if method == "area" else interp)
    m = cv2.resize(cv2.resize(mask.view(np.uint8), small, interpolation=cv2.INTER_NEAREST),
                   (w, h), interpolation=cv2.INTER_NEAREST)
    return img, m.astype(bool)


def jpeg(img: np.ndarray, quality: int, subsampling: str) -> np.ndarray:
    """A real JPEG round trip (libjpeg through OpenCV)."""
    return jpeg_decode(jpeg_encode(img, quality, subsampling))


def jpeg_encode(img: np.ndarray, quality: int, subsampling: str) -> bytes:
    # cvtColor rather than a reversed view: OpenCV would copy the view slowly
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, quality,
                            cv2.IMWRITE_JPEG_SAMPLING_FACTOR, JPEG_SAMPLING[subsampling]])
    assert ok
    return buf.tobytes()


def jpeg_decode(data: bytes) -> np.ndarray:
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR),
                        cv2.COLOR_BGR2RGB)


# --- the chain -------------------------------------------------------------------------------------

class Frame:
    """The picture as it travels through the stages. In linear light `img` is float32 linear
    sRGB, or after `to_camera` the camera's own RGB (a 2-D mosaic between mosaic and demosaic,
    digital numbers after exposure), and `matrix` (3x3, None for the identity) is what the ISP
    still has to apply to it at the encode; in the 8-bit stages `img` is the encoded image."""

    __slots__ = ("img", "mask", "matrix", "raw")

    def __init__(self, img: np.ndarray, mask: np.ndarray):
        self.img, self.mask, self.matrix, self.raw = img, mask, None, False

    def to_camera(self) -> None:
        """Into the camera's colour space (its colour matrix takes the image back at the
        encode); raw noise added there is colour-correlated after the matrix, as in a camera."""
        self.img = cv2.transform(self.img, CCM_INV)
        self.matrix = CCM if self.matrix is None else self.matrix @ CCM
        self.raw = True


@dataclass(frozen=True)
class Stage:
    """One stage of the camera. It runs when any factor in `switches` differs from its registry
    default; `params` only qualify it (read when it runs, ignored when it does not, so a row
    with only motion_blur_angle set is the clean render). `linear`: works in linear light,
    between the decode and the encode; `raw`: works in the camera's colour space, on what the
    photosites record. `apply(frame, row, settings)` updates the frame in place."""

    name: str
    switches: tuple[str, ...]
    apply: Callable[[Frame, dict, SensorSettings], None]
    linear: bool
    raw: bool = False
    params: tuple[str, ...] = ()
    # the active-stage test, precomputed: the switches' values as one tuple (or one value)
    # against their defaults, a single comparison per row
    _get: Callable[[dict], object] = field(init=False, repr=False, compare=False)
    _identity: object = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        unknown = [n for n in self.switches + self.params if n not in REGISTRY]
        if unknown or not self.switches:
            raise TypeError(f"stage {self.name}: {unknown or 'no switches'}: name the sensor "
                            "factors of cuelab.factors that switch it on")
        defaults = tuple(REGISTRY[n].default for n in self.switches)
        object.__setattr__(self, "_get", itemgetter(*self.switches))
        object.__setattr__(self, "_identity", defaults if len(defaults) > 1 else defaults[0])

    @property
    def factors(self) -> tuple[str, ...]:
        return self.switches + self.params

    def is_on(self, row: dict) -> bool:
        return self._get(row) != self._identity


LENS_K = ("lens_k1", "lens_k2", "lens_p1", "lens_p2")


def _lens_distortion(f: Frame, row: dict, s: SensorSettings) -> None:
    f.img, f.mask = distort(f.img, f.mask, tuple(row[n] for n in LENS_K))


def _chromatic_aberration(f: Frame, row: dict, s: SensorSettings) -> None:
    f.img = chromatic_aberration(f.img, row["chromatic_aberration"])


def _vignetting(f: Frame, row: dict, s: SensorSettings) -> None:
    f.img = vignetting(f.img, row["vignetting"])


def _defocus(f: Frame, row: dict, s: SensorSettings) -> None:
    f.img = defocus(f.img, row["blur_sigma"])


def _motion_blur(f: Frame, row: dict, s: SensorSettings) -> None:
    f.img = motion_blur(f.img, row["motion_blur_length"], row["motion_blur_angle"])


def _prnu(f: Frame, row: dict, s: SensorSettings) -> None:
    f.img = photo_response(f.img, row["prnu"])


def _mosaic(f: Frame, row: dict, s: SensorSettings) -> None:
    """The colour filter array: each photosite records one colour of camera RGB."""
    f.img = (f.img * bayer_masks(*f.img.shape[:2])).sum(-1)


def _exposure(f: Frame, row: dict, s: SensorSettings) -> None:
    """Shot and read noise, drawn from the row's seed; quantisation."""
    rng = np.random.Generator(row_bit_generator(int(row["seed"])))
    f.img = expose(f.img, int(row["iso"]), s, rng)
    f.matrix = f.matrix / np.float32(2 ** s.bit_depth - 1)  # digital numbers -> relative


def _demosaic(f: Frame, row: dict, s: SensorSettings) -> None:
    f.img = demosaic(f.img, row["demosaic"])


@lru_cache(maxsize=256)
def _white_balance_matrix(kelvin: float) -> np.ndarray:
    m = np.diag(white_balance_gains(kelvin))
    m.flags.writeable = False
    return m


def _white_balance(f: Frame, row: dict, s: SensorSettings) -> None:
    """White balance, on the camera's output colours: folded into the encode's matrix."""
    wb = _white_balance_matrix(float(row["white_balance"]))
    f.matrix = wb if f.matrix is None else wb @ f.matrix


def _resample(f: Frame, row: dict, s: SensorSettings) -> None:
    f.img, f.mask = resample(f.img, f.mask, row["resample_scale"], row["resample_method"])


def _jpeg(f: Frame, row: dict, s: SensorSettings) -> None:
    f.img = jpeg(f.img, int(row["jpeg_quality"]), row["jpeg_subsampling"])


# The camera, in physical order. Linear-light stages come first (one decode before them, one
# encode after); the raw ones share the camera's colour space, entered once.
STAGES: tuple[Stage, ...] = (
    # lens
    Stage("lens_distortion", LENS_K, _lens_distortion, linear=True),
    Stage("chromatic_aberration", ("chromatic_aberration",), _chromatic_aberration, linear=True),
    Stage("vignetting", ("vignetting",), _vignetting, linear=True),
    # optics
    Stage("defocus", ("blur_sigma",), _defocus, linear=True),
    Stage("motion_blur", ("motion_blur_length",), _motion_blur, linear=True,
          params=("motion_blur_angle",)),
    # raw sensor: photosites of uneven response behind a colour filter array, then the exposure
    Stage("prnu", ("prnu",), _prnu, linear=True, raw=True),
    Stage("mosaic", ("demosaic",), _mosaic, linear=True, raw=True),
    Stage("exposure", ("iso",), _exposure, linear=True, raw=True),
    # ISP: demosaicing, then white balance and the colour matrix, folded into the encode
    Stage("demosaic", ("demosaic",), _demosaic, linear=True, raw=True),
    Stage("white_balance", ("white_balance",), _white_balance, linear=True),
    # after the encode, on 8-bit sRGB
    Stage("resample", ("resample_scale",), _resample, linear=False,
          params=("resample_method",)),
    Stage("jpeg", ("jpeg_quality",), _jpeg, linear=False, params=("jpeg_subsampling",)),
)
_linear_flags = [st.linear for st in STAGES]
assert _linear_flags == sorted(_linear_flags, reverse=True), "linear-light stages come first"


def active_stages(row: dict) -> list[Stage]:
    """The stages this row switches on, in order."""
    return [st for st in STAGES if st.is_on(row)]


def needs_linear(row: dict) -> bool:
    """Is any stage that works in linear light switched on?"""
    return any(st.linear for st in active_stages(row))


def acquire(rgb: np.ndarray, mask: np.ndarray, row: dict, s: SensorSettings
            ) -> tuple[np.ndarray, np.ndarray]:
    """One clean render (uint8 sRGB) + its mask -> the final image (uint8) + mask."""
    stages = active_stages(row)
    if not stages:
        return rgb, mask
    f = Frame(rgb, mask)
    i = _run_linear(f, stages, row, s)
    for st in stages[i:]:
        st.apply(f, row, s)
    return f.img, f.mask


def _run_linear(f: Frame, stages: list[Stage], row: dict, s: SensorSettings) -> int:
    """Decode, the leading linear stages of `stages`, encode; the number of stages run."""
    n = 0
    while n < len(stages) and stages[n].linear:
        n += 1
    if n:
        f.img = decode_srgb8(f.img)
        for st in stages[:n]:
            if st.raw and not f.raw:
                f.to_camera()
            st.apply(f, row, s)
        f.img = encode_srgb8(f.img, f.matrix)
    return n
