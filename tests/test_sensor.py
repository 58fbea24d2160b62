"""The simulated camera: photon transfer, JPEG, distortion against OpenCV, identity,
determinism, the stage list against the registry, sub-pixel blur, PRNU; and the step, which
reuses renders and writes the dataset."""

import cv2
import numpy as np
import pandas as pd
import pytest

from conftest import bare_experiment
from cuelab.atomic import npz_bytes
from cuelab.color import decode_srgb8
from cuelab.config import SensorSettings, experiment_from_dict
from cuelab.data import load_split, read_index
from cuelab.errors import CuelabError
from cuelab.factors import REGISTRY, SENSOR_FACTOR_NAMES
from cuelab.sensor import sensor
from cuelab.sensor.camera import (CCM, SCENE_ILLUMINANT_K, STAGES, acquire, active_stages,
                                  bayer_masks, camera_matrix, defocus_kernel, demosaic,
                                  distort_points, expose, jpeg, jpeg_encode, motion_kernel,
                                  needs_linear, prnu_pattern, row_bit_generator, sensor_gain,
                                  standard_normal, white_balance_gains)

IDENTITY = {n: REGISTRY[n].default for n in SENSOR_FACTOR_NAMES} | {"seed": 5}


def make_image():
    """A render-like picture: smooth shading, edges and texture."""
    y, x = np.mgrid[0:64, 0:64] / 63
    img = np.stack([0.2 + 0.6 * x, 0.3 + 0.4 * y, 0.5 - 0.3 * x * y], -1)
    img[16:48, 20:44] = [0.8, 0.2, 0.1]
    img[16:48:4, 20:44] *= 0.3
    return (img * 255).astype(np.uint8), np.pad(np.ones((32, 24), bool), ((16, 16), (20, 20)))


@pytest.mark.parametrize("iso", [400, 1600, 6400])
def test_photon_transfer_curve_has_the_slope_of_the_gain(iso):
    s = SensorSettings()
    rng = np.random.default_rng(0)
    means, variances = [], []
    for level in np.linspace(0.05, 0.8, 8):  # flat fields below saturation
        dn = expose(np.full((256, 256), level), iso, s, rng)
        means.append(dn.mean())
        variances.append(dn.var())
    slope = np.polyfit(means, variances, 1)[0]
    assert slope == pytest.approx(sensor_gain(iso, s), rel=0.05)
    # beyond its shot noise, a flat field's variance is the read noise (plus quantisation)
    dn = expose(np.full((1024, 1024), 0.1), iso, s, rng)
    read = dn.var() - sensor_gain(iso, s) * dn.mean()
    assert read == pytest.approx((s.read_noise * sensor_gain(iso, s)) ** 2 + 1 / 12, rel=0.25)


def test_noise_draws_are_normal():
    z = standard_normal(np.random.default_rng(0), (1000, 1000))
    assert abs(z.mean()) < 0.005 and z.var() == pytest.approx(1, abs=0.005)
    assert abs((z ** 3).mean()) < 0.02 and (z ** 4).mean() == pytest.approx(3, abs=0.05)
    assert np.mean(np.abs(z) > 3) == pytest.approx(0.0027, rel=0.1)
    # per-image generators keyed by neighbouring seeds draw unrelated noise, the same seed the same
    a, b, a2 = (standard_normal(np.random.Generator(row_bit_generator(k)), (64, 64, 3))
                for k in (41, 42, 41))
    assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 0.03 and np.array_equal(a, a2)


def test_without_read_noise_dim_light_is_counted_in_whole_photons():
    s = SensorSettings(read_noise=0.0)
    iso = 12800
    two_electrons = 2 / (s.full_well * s.base_iso / iso)
    dn = expose(np.full((512, 512), two_electrons), iso, s, np.random.default_rng(0))
    electrons = dn / sensor_gain(iso, s)
    assert np.abs(electrons - np.round(electrons)).max() < 0.05  # whole photons
    assert np.mean(dn == 0) == pytest.approx(np.exp(-2), rel=0.03)  # Poisson's P(0)
    assert electrons.var() == pytest.approx(2, rel=0.03)


def test_jpeg_error_and_size_are_monotone_in_quality():
    img, _ = make_image()
    qualities = [5, 20, 40, 60, 80, 95]
    errors = [np.abs(jpeg(img, q, "4:2:0").astype(float) - img).mean() for q in qualities]
    sizes = [len(jpeg_encode(img, q, "4:2:0")) for q in qualities]
    assert errors == sorted(errors, reverse=True) and len(set(errors)) == len(errors)
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)
    # chroma subsampling costs colour detail
    e444 = np.abs(jpeg(img, 90, "4:4:4").astype(float) - img).mean()
    assert e444 < errors[-2]


@pytest.mark.parametrize("k", [(-0.3, 0.05, 0.0, 0.0), (0.25, -0.1, 0.01, -0.02),
                               (0.0, 0.0, 0.03, 0.02), (-0.1, 0.0, -0.01, 0.01)])
def test_distortion_agrees_with_opencv(k):
    h = w = 64
    rng = np.random.default_rng(1)
    ideal = rng.uniform(2, 61, (200, 2))
    distorted = distort_points(ideal, np.array(k), h, w)
    K = camera_matrix(h, w)
    recovered = cv2.undistortPoints(distorted.reshape(-1, 1, 2), K, np.array(k), P=K)
    assert np.abs(recovered.reshape(-1, 2) - ideal).max() < 0.05


def test_distortion_warps_image_and_mask_together():
    img, mask = make_image()
    out, warped = acquire(img, mask, IDENTITY | {"lens_k1": 0.4}, SensorSettings())
    _, barrel = acquire(img, mask, IDENTITY | {"lens_k1": -0.4}, SensorSettings())
    assert barrel.sum() < mask.sum() < warped.sum()  # pincushion magnifies, barrel shrinks
    red = (out[..., 0] > 150) & (out[..., 1] < 100) & (out[..., 2] < 100)
    assert (red & warped).sum() / red.sum() > 0.9


def test_identity_parameters_return_the_clean_render():
    img, mask = make_image()
    rng = np.random.default_rng(2)
    noise = rng.integers(0, 256, img.shape, dtype=np.uint8)
    for picture in (img, noise):
        out, m = acquire(picture, mask, IDENTITY, SensorSettings())
        assert np.abs(out.astype(int) - picture).max() <= 1
        assert np.array_equal(m, mask)


@pytest.mark.parametrize("change", [
    {"lens_k1": -0.2}, {"vignetting": 0.5}, {"chromatic_aberration": 2.0}, {"blur_sigma": 1.5},
    {"motion_blur_length": 6.0, "motion_blur_angle": 30.0}, {"iso": 3200},
    {"demosaic": "bilinear"}, {"demosaic": "malvar"}, {"white_balance": 3000.0},
    {"resample_scale": 0.5, "resample_method": "bicubic"}, {"jpeg_quality": 30},
    {"prnu": 0.05}])
def test_each_factor_changes_the_image_deterministically(change):
    img, mask = make_image()
    row = IDENTITY | change
    a, _ = acquire(img, mask, row, SensorSettings())
    b, _ = acquire(img, mask, row, SensorSettings())
    assert np.array_equal(a, b)
    assert np.abs(a.astype(int) - img).mean() > 0.5
    if "iso" in change:  # the noise comes from the row's seed
        c, _ = acquire(img, mask, row | {"seed": 6}, SensorSettings())
        assert not np.array_equal(a, c)


# --- the stage list against the registry -------------------------------------------------------

PARAMS = {p: st for st in STAGES for p in st.params}  # factors that only qualify a stage


def on_value(name):
    """A value that switches a stage on: the middle of the domain, or the first other level."""
    f = REGISTRY[name]
    if f.is_categorical:
        return next(v for v in f.levels if v != f.default)
    mid = (f.low + f.high) / 2
    value = f.high if mid == f.default else mid
    return int(value) if f.integer else value


def domain_values(name):
    """Non-default values across the factor's domain: 1%, 10%, 50%, 90% of the way from the
    default to each end, and the end itself (an angle's 180 is its 0 again, so not that end)."""
    f = REGISTRY[name]
    if f.is_categorical:
        return [v for v in f.levels if v != f.default]
    values = []
    for end in (f.low, f.high):
        fracs = (0.01, 0.1, 0.5, 0.9) + (() if name == "motion_blur_angle" else (1.0,))
        for frac in fracs if end != f.default else ():
            v = end if frac == 1.0 else f.default + frac * (end - f.default)
            values.append(max(1, round(v)) if f.integer else v)
    if name == "motion_blur_length":
        values += [0.05, 0.25, 0.5, 0.75, 1.0]  # sub-pixel motion, a no-op before
    if name == "blur_sigma":
        values += [0.1, 0.25]
    return values


def test_every_sensor_factor_is_read_by_one_stage_and_switches_only_through_it():
    names = [n for st in STAGES for n in st.factors]
    assert set(names) == set(SENSOR_FACTOR_NAMES)  # no factor without a stage: none is a no-op
    assert not set(PARAMS) & {n for st in STAGES for n in st.switches}
    assert active_stages(IDENTITY) == [] and not needs_linear(IDENTITY)
    for st in STAGES:
        for name in st.switches:
            assert st in active_stages(IDENTITY | {name: on_value(name)})
    assert [st.name for st in active_stages(IDENTITY | {"iso": 800, "jpeg_quality": 50})] \
        == ["exposure", "jpeg"]
    assert needs_linear(IDENTITY | {"white_balance": 5000.0})
    assert not needs_linear(IDENTITY | {"jpeg_quality": 50, "resample_scale": 0.5})


def test_the_white_balance_identity_is_the_scene_illuminant():
    assert REGISTRY["white_balance"].default == SCENE_ILLUMINANT_K \
        == REGISTRY["light_temperature"].default
    assert np.array_equal(white_balance_gains(REGISTRY["white_balance"].default), np.ones(3))


@pytest.mark.parametrize("name", SENSOR_FACTOR_NAMES)
def test_every_value_of_every_sensor_factor_does_something_and_the_default_nothing(name):
    img, mask = make_image()
    noise = np.random.default_rng(3).integers(0, 256, img.shape, dtype=np.uint8)
    s = SensorSettings()
    # alone at its default, or a parameter without its stage: the clean render, byte for byte
    for value in [REGISTRY[name].default] + (domain_values(name) if name in PARAMS else []):
        for picture in (img, noise):
            out, m = acquire(picture, mask, IDENTITY | {name: value}, s)
            assert np.array_equal(out, picture) and np.array_equal(m, mask)
    # a parameter acts with its stage on; against that stage at the parameter's default
    base = IDENTITY | {n: on_value(n) for n in PARAMS[name].switches} if name in PARAMS \
        else IDENTITY
    before = [acquire(p, mask, base, s)[0] for p in (img, noise)]
    for value in domain_values(name):
        assert REGISTRY[name].accepts(value)
        after = [acquire(p, mask, base | {name: value}, s)[0] for p in (img, noise)]
        assert any(not np.array_equal(a, b) for a, b in zip(after, before)), (name, value)


def test_sub_pixel_motion_blur_is_real_and_grows_from_the_identity():
    # half a pixel of horizontal motion: 1/16 of each pixel's light to each side
    assert np.allclose(motion_kernel(0.5, 0.0), [[1 / 16, 7 / 8, 1 / 16]], atol=1e-3)
    spread = [1 - motion_kernel(length, 30.0).max() for length in (0.01, 0.1, 0.5, 0.9, 1.5)]
    assert 0 < spread[0] < 0.01 and spread == sorted(spread)
    for length, angle in ((0.3, 0.0), (4.0, 30.0), (10.0, 90.0), (7.5, 135.0), (19.0, 60.0)):
        k = motion_kernel(length, angle)
        assert k.shape[0] % 2 and k.shape[1] % 2 and k.sum() == pytest.approx(1)
        y, x = np.mgrid[0:k.shape[0], 0:k.shape[1]]
        cx, cy = (k * x).sum() - k.shape[1] // 2, (k * y).sum() - k.shape[0] // 2
        assert abs(cx) < 1e-6 and abs(cy) < 1e-6  # centred: blur does not shift the image
        # the spread along the motion: a segment's length^2 / 12, plus the bilinear weights'
        # u (1 - u) for a shift of fractional part u (1/6 on average over a long motion)
        a = np.radians(angle)
        along = (k * ((x - k.shape[1] // 2) * np.cos(a) - (y - k.shape[0] // 2) * np.sin(a)) ** 2
                 ).sum()
        expected = length ** 2 / 12 + (length / 4 - length ** 2 / 12 if length < 1 else 1 / 6)
        assert along == pytest.approx(expected, rel=0.05, abs=0.02)


@pytest.mark.parametrize("sigma", [0.1, 0.25, 0.5, 1.0, 2.0, 4.5])
def test_defocus_spreads_light_with_the_variance_it_names(sigma):
    k = defocus_kernel(sigma)
    x = np.arange(len(k)) - len(k) // 2
    assert k.sum() == pytest.approx(1) and (k * x * x).sum() == pytest.approx(sigma ** 2, rel=0.01)


# --- photo-response non-uniformity ----------------------------------------------------------------

def flat(level):
    return np.full((64, 64, 3), level, np.uint8), np.zeros((64, 64), bool)


def test_prnu_is_a_fixed_pattern_of_the_sensor():
    img, mask = make_image()
    s = SensorSettings()
    # the same for rows of different seeds, and for different pictures
    a, _ = acquire(img, mask, IDENTITY | {"prnu": 0.05, "seed": 1}, s)
    b, _ = acquire(img, mask, IDENTITY | {"prnu": 0.05, "seed": 99}, s)
    assert np.array_equal(a, b) and not np.array_equal(a, img)
    dark, bright = ((decode_srgb8(acquire(p, m, IDENTITY | {"prnu": 0.05}, s)[0])
                     / decode_srgb8(p)).ravel() for p, m in (flat(90), flat(170)))
    assert np.corrcoef(dark, bright)[0, 1] > 0.95
    # through the noisy raw path the photosites keep their gains: the noise-free image's
    # deviations are what the mean of many noisy frames converges to
    mosaic = IDENTITY | {"prnu": 0.05, "demosaic": "bilinear"}
    grey, m = flat(128)
    clean = decode_srgb8(acquire(grey, m, mosaic, s)[0]) - decode_srgb8(grey)
    frames = np.mean([decode_srgb8(acquire(grey, m, mosaic | {"iso": 400, "seed": k}, s)[0])
                      for k in range(24)], axis=0) - decode_srgb8(grey)
    assert np.corrcoef(clean.ravel(), frames.ravel())[0, 1] > 0.9
    # the pattern: a constant per image size, zero mean, unit variance per channel
    z = prnu_pattern(64, 64)
    assert z is prnu_pattern(64, 64) and not z.flags.writeable
    assert np.allclose(z.mean((0, 1)), 0, atol=1e-5) and np.allclose(z.std((0, 1)), 1, atol=1e-4)
    assert abs(np.corrcoef(z[..., 0].ravel(), z[..., 1].ravel())[0, 1]) < 0.05


def test_prnu_keeps_the_mean_and_its_strength_scales_the_deviation():
    grey, mask = flat(128)
    s = SensorSettings()
    level = decode_srgb8(grey)
    deviation = {}
    for strength in (0.01, 0.02, 0.04, 0.08):
        out = decode_srgb8(acquire(grey, mask, IDENTITY | {"prnu": strength}, s)[0])
        assert out.mean() == pytest.approx(level.mean(), rel=0.005)  # the mean gain is 1
        deviation[strength] = (out - level).std() / level.mean()
    # relative deviation = strength x the colour matrix's gain on uncorrelated channels
    expected = np.sqrt((CCM ** 2).sum(1)).mean()
    for strength, dev in deviation.items():
        assert dev == pytest.approx(strength * expected, rel=0.15)
    assert deviation[0.08] / deviation[0.04] == pytest.approx(2, rel=0.05)
    assert deviation[0.04] / deviation[0.02] == pytest.approx(2, rel=0.1)


def test_better_demosaicing_is_better():
    # Malvar-He-Cutler assumes what natural images (and our renders) have: colour channels
    # that share their detail. So: textured shading under a smooth colour, band-limited.
    y, x = np.mgrid[0:64, 0:64] / 63
    shading = 0.4 + 0.4 * np.sin(x * 25) * np.cos(y * 17)
    colour = np.stack([0.9 - 0.5 * x, 0.6 + 0.2 * y, 0.3 + 0.4 * x * y], -1)
    img = cv2.GaussianBlur(shading[..., None] * colour, (0, 0), 0.8).astype(np.float32)
    raw = (img * bayer_masks(64, 64)).sum(-1)
    err = {m: ((demosaic(raw, m) - img) ** 2)[2:-2, 2:-2].mean()
           for m in ("bilinear", "malvar")}
    assert err["malvar"] < 0.8 * err["bilinear"]
    # at the photosites a mosaic keeps, both give back exactly what was recorded
    for m in err:
        assert np.allclose((demosaic(raw, m) * bayer_masks(64, 64)).sum(-1), raw, atol=1e-6)


@pytest.fixture
def renders_dir(tmp_path):
    """A render directory made from arrays (the sensor step does not care who rendered)."""
    img, mask = make_image()
    ids = np.array(["r0", "r1"], dtype="U16")
    payload = npz_bytes({"render_id": ids, "rgb": np.stack([img, img[::-1]]),
                          "mask": np.stack([mask, mask[::-1]]),
                          "visible_fraction": np.ones(2, np.float32)})
    (tmp_path / "renders").mkdir()
    (tmp_path / "renders" / "chunk-00000.npz").write_bytes(payload)
    return tmp_path / "renders"


def scenes(rows):
    base = {n: REGISTRY[n].default for n in SENSOR_FACTOR_NAMES}
    return pd.DataFrame([base | {"seed": 1, "label": 0} | r for r in rows])


def test_step_acquires_many_from_one_render_and_is_deterministic(tmp_path, renders_dir):
    exp = experiment_from_dict(bare_experiment())
    table = scenes([{"image_id": "a", "split": "train", "render_id": "r0"},
                    {"image_id": "b", "split": "train", "render_id": "r1"},
                    {"image_id": "c", "split": "sweep", "render_id": "r0", "iso": 800},
                    {"image_id": "d", "split": "sweep", "render_id": "r0", "iso": 6400}])
    summary = sensor(exp, table, renders_dir, tmp_path / "images", progress=False)
    assert summary.images == {"train": 2, "sweep": 2} and summary.renders_used == 2
    train, sweep = (load_split(tmp_path / "images", s) for s in ("train", "sweep"))
    assert list(train.image_ids) == ["a", "b"] and train.images.shape == (2, 64, 64, 3)
    img, mask = make_image()
    assert np.abs(train.images[0].astype(int) - img).max() <= 1
    assert np.array_equal(train.masks[1], mask[::-1])
    noisy = [np.abs(sweep.images[i].astype(int) - img).mean() for i in range(2)]
    assert 0 < noisy[0] < noisy[1]
    mapped = load_split(tmp_path / "images", "sweep", mmap=True)
    assert isinstance(mapped.images, np.memmap) and np.array_equal(mapped.images, sweep.images)
    first = {f.name: f.read_bytes() for f in (tmp_path / "images").iterdir()}
    sensor(exp, table, renders_dir, tmp_path / "images", progress=False)
    assert {f.name: f.read_bytes() for f in (tmp_path / "images").iterdir()} == first
    assert set(read_index(tmp_path / "images").columns) >= {"image_id", "split", "label"}


def test_a_missing_render_names_the_image(tmp_path, renders_dir):
    exp = experiment_from_dict(bare_experiment())
    table = scenes([{"image_id": "a", "split": "train", "render_id": "r0"},
                    {"image_id": "lost-7", "split": "train", "render_id": "nope"}])
    with pytest.raises(CuelabError, match="lost-7"):
        sensor(exp, table, renders_dir, tmp_path / "images", progress=False)
    assert not (tmp_path / "images").exists()
    assert not list(tmp_path.glob(".images*"))  # nothing half-written left behind


def test_a_table_sampled_before_a_factor_existed_is_named(tmp_path, renders_dir):
    exp = experiment_from_dict(bare_experiment())
    table = scenes([{"image_id": "a", "split": "train", "render_id": "r0"}]).drop(columns="prnu")
    with pytest.raises(CuelabError, match="column 'prnu' is missing.*cuelab sample"):
        sensor(exp, table, renders_dir, tmp_path / "images", progress=False)


def test_contact_sheet_has_a_row_per_sensor_factor(tmp_path, renders_dir):
    from PIL import Image

    from cuelab.sensor.contact_sheet import contact_sheet

    contact_sheet(experiment_from_dict(bare_experiment()), renders_dir, tmp_path / "s.png")
    sheet = np.asarray(Image.open(tmp_path / "s.png"))
    assert sheet.shape[0] == len(SENSOR_FACTOR_NAMES) * (128 + 14)
    iso_row = SENSOR_FACTOR_NAMES.index("iso") * (128 + 14)
    first, last = sheet[iso_row:iso_row + 128, 150:278], sheet[iso_row:iso_row + 128, -128:]
    assert np.abs(first.astype(int) - last).mean() > 5  # noise grows along the row


def test_contact_sheet_shows_every_parameter_with_its_stage_on():
    from cuelab.sensor.contact_sheet import COMPANIONS

    assert set(COMPANIONS) == set(PARAMS)
    for name, companion in COMPANIONS.items():
        assert set(companion) == set(PARAMS[name].switches)
        assert all(v != REGISTRY[k].default and REGISTRY[k].accepts(v)
                   for k, v in companion.items())
