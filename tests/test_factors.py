"""The factor registry declares every factor of the mission, coherently."""

import subprocess

import pytest

from conftest import BIN
from cuelab.factors import REGISTRY, SCENE_FACTOR_NAMES, SENSOR_FACTOR_NAMES

MISSION_SCENE = ["shape", "size", "color", "texture", "material", "rotation", "position_x",
                 "position_y", "background", "light_elevation", "light_azimuth",
                 "light_intensity", "light_temperature", "camera_distance", "camera_elevation",
                 "camera_azimuth", "focal_length", "occluder"]
MISSION_SENSOR = ["lens_k1", "lens_k2", "lens_p1", "lens_p2", "vignetting",
                  "chromatic_aberration", "blur_sigma", "motion_blur_length", "iso",
                  "white_balance", "jpeg_quality", "resample_scale"]


def test_the_mission_factors_are_declared_where_they_act():
    assert set(MISSION_SCENE) <= set(SCENE_FACTOR_NAMES)
    assert set(MISSION_SENSOR) <= set(SENSOR_FACTOR_NAMES)
    assert not set(SCENE_FACTOR_NAMES) & set(SENSOR_FACTOR_NAMES)


@pytest.mark.parametrize("name", list(REGISTRY))
def test_each_factor_is_documented_and_its_default_is_in_its_domain(name):
    f = REGISTRY[name]
    assert len(f.doc) > 20 and f.accepts(f.default)
    if f.is_categorical:
        assert len(f.levels) >= 2 and f.default in f.levels
        assert not f.accepts(1.0)
    else:
        assert f.low < f.high
        assert not f.accepts(f.high + 1) and not f.accepts("1") and not f.accepts(True)


def test_the_render_issue_needs_enough_levels():
    assert len(REGISTRY["shape"].levels) >= 8
    assert len(set(REGISTRY["texture"].levels) - {"none"}) >= 6
    assert {"matte", "glossy", "metal", "rubber"} <= set(REGISTRY["material"].levels)


@pytest.mark.parametrize("name,value,ok", [
    ("shape", "mesh:assets/duck.obj", True),
    ("shape", "mesh:duck.fbx", False),
    ("color", "hsv:200,0.5,1", True),
    ("color", "hsv:400,0.5,1", False),
    ("color", "hsv:20,1.5,1", False),
    ("background", "image:backgrounds/kitchen.jpg", True),
    ("background", "image:", False),
    ("iso", 800, True),
    ("iso", 800.5, False),
])
def test_open_ended_values(name, value, ok):
    assert REGISTRY[name].accepts(value) is ok


def test_cli_prints_every_factor():
    out = subprocess.run([BIN / "cuelab", "factors"], capture_output=True, text=True,
                         check=True).stdout
    for name, f in REGISTRY.items():
        line = next(line for line in out.splitlines() if line.startswith(name + " "))
        assert f.stage in line and str(f.default) in line
