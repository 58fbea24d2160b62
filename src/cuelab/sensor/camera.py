"""The simulated camera: a clean render -> the image a camera would have recorded.

Physical order: lens (distortion, chromatic aberration, vignetting) -> optics (defocus, motion
blur) -> raw sensor (into the camera's colour space, Bayer mosaic, shot and read noise at the
row's ISO, quantisation) -> ISP (demosaicing, white balance, colour matrix, gamma) -> resampling ->
JPEG. Each stage is a plain function of numpy arrays and the row's sensor factors; a stage whose
factors are at their identity values is skipped, so identity factors return the clean render
(exactly when no stage is on; within 1 LSB through the linear-light round trip).

Geometry (distortion, resampling) is applied to the object mask too, with nearest-neighbour
sampling, so the mask keeps marking the object's pixels in the final image.
"""

from __future__ import annotations

import math
import threading
from functools import lru_cache
from statistics import NormalDist

import cv2
import numpy as np

from ..color import decode_srgb8, encode_srgb8
from ..config import SensorSettings

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


def white_balance_gains(assumed_kelvin: float, scene_kelvin: float = 6500.0) -> np.ndarray:
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

def defocus(img: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(img, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT)


@lru_cache(maxsize=256)
def motion_kernel(length: float, angle: float) -> np.ndarray:
    """A line of `length` pixels at `angle` degrees, anti-aliased, summing to 1."""
    size = int(math.ceil(length)) | 1
    scale = 8  # draw at 8x and shrink, for sub-pixel lengths and angles
    big = np.zeros((size * scale, size * scale), np.float32)
    c = (size * scale - 1) / 2
    dx = math.cos(math.radians(angle)) * length * scale / 2
    dy = -math.sin(math.radians(angle)) * length * scale / 2
    cv2.line(big, (round(c - dx), round(c - dy)), (round(c + dx), round(c + dy)), 1.0,
             thickness=scale, lineType=cv2.LINE_AA)
    kernel = cv2.resize(big, (size, size), interpolation=cv2.INTER_AREA)
    return kernel / kernel.sum()


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


# --- the chain -------------------------------------------------------------------------------------

def acquire(rgb: np.ndarray, mask: np.ndarray, row: dict, s: SensorSettings
            ) -> tuple[np.ndarray, np.ndarray]:
    """One clean render (uint8 sRGB) + its mask -> the final image (uint8) + mask."""
    out = acquire_linear(rgb, mask, row, s) if needs_linear(row) else (rgb, mask)
    out, mask = out
    # resampling and compression, on the 8-bit image as a camera's encoder sees it
    if row["resample_scale"] < 1:
        out, mask = resample(out, mask, row["resample_scale"], row["resample_method"])
    if row["jpeg_quality"] > 0:
        out = jpeg(out, int(row["jpeg_quality"]), row["jpeg_subsampling"])
    return out, mask


def needs_linear(row: dict) -> bool:
    """Is any stage that works in linear light switched on?"""
    return bool(row["lens_k1"] or row["lens_k2"] or row["lens_p1"] or row["lens_p2"]
                or row["chromatic_aberration"] > 0 or row["vignetting"] > 0
                or row["blur_sigma"] > 0 or row["motion_blur_length"] >= 1 or row["iso"] > 0
                or row["demosaic"] != "none" or row["white_balance"] != 6500)


def acquire_linear(rgb: np.ndarray, mask: np.ndarray, row: dict, s: SensorSettings):
    img = decode_srgb8(rgb)
    # lens
    k = (row["lens_k1"], row["lens_k2"], row["lens_p1"], row["lens_p2"])
    if any(k):
        img, mask = distort(img, mask, k)
    if row["chromatic_aberration"] > 0:
        img = chromatic_aberration(img, row["chromatic_aberration"])
    if row["vignetting"] > 0:
        img = vignetting(img, row["vignetting"])
    # optics
    if row["blur_sigma"] > 0:
        img = defocus(img, row["blur_sigma"])
    if row["motion_blur_length"] >= 1:
        img = motion_blur(img, row["motion_blur_length"], row["motion_blur_angle"])
    # raw sensor and ISP; the ISP's linear part (colour matrix, white balance) is applied as
    # one matrix when the image is encoded
    iso, method = int(row["iso"]), row["demosaic"]
    isp = np.eye(3)
    if iso > 0 or method != "none":
        cam = cv2.transform(img, CCM_INV)  # linear sRGB -> camera RGB
        signal = (cam * bayer_masks(*mask.shape)).sum(-1) if method != "none" else cam
        if iso > 0:
            rng = np.random.Generator(row_bit_generator(int(row["seed"])))
            signal = expose(signal, iso, s, rng)
        img = demosaic(signal, method) if method != "none" else signal
        isp = CCM / np.float32(2 ** s.bit_depth - 1) if iso > 0 else CCM  # DN -> relative
    if row["white_balance"] != 6500:
        isp = np.diag(white_balance_gains(row["white_balance"])) @ isp
    return encode_srgb8(img, isp), mask


def resample(img: np.ndarray, mask: np.ndarray, scale: float, method: str):
    h, w = mask.shape
    small = (max(1, round(w * scale)), max(1, round(h * scale)))
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
