"""The experiment schema: valid files load, every kind of bad input gets one clear message."""

import re
import subprocess

import pytest
import yaml

from conftest import BIN, ROOT, bare_experiment, tiny_experiment, write_params
from cuelab.config import experiment_from_dict, experiment_from_yaml, load_experiment
from cuelab.errors import ExperimentError


def problems(data) -> list[str]:
    with pytest.raises(ExperimentError) as err:
        experiment_from_dict(data)
    return [str(p) for p in err.value.problems]


def test_default_and_tiny_experiments_are_valid():
    exp = load_experiment(ROOT / "params.yaml")
    assert exp.label.factor == "shape" and len(exp.classes) >= 2
    tiny = experiment_from_dict(tiny_experiment())
    assert tiny.row_counts() == {"train": 30, "val": 6, "test": 6, "sweep": 5 * 4 + 4 * 2 + 3 * 3,
                                 "conflict": 12, "protocol": 5 * (8 + 3)}


def test_positional_and_explicit_pairs():
    exp = experiment_from_dict(tiny_experiment())
    assert exp.pairs("color") == ["red", "green", "blue"]
    assert exp.pairs("texture") == ["dots", "none", "checker"]
    exp = experiment_from_dict(bare_experiment(factors={
        "size": {"range": [0.6, 1.5], "correlation": {"rho": 1}}}))
    flat = [x for pair in exp.pairs("size") for x in pair]
    assert flat == pytest.approx([0.6, 0.9, 0.9, 1.2, 1.2, 1.5])


# (what to change, the field path the message must name, a piece of the bad value, a piece of
#  what is allowed)
BAD = [
    ({"bogus": 1}, "bogus", "bogus", "allowed here: name, seed"),
    ({"factors": {"color": {"levels": ["red", "green", "blue"],
                            "correlation": {"rho": 1.5}}}},
     "factors.color.correlation.rho", "1.5", "less than or equal to 1"),
    ({"factors": {"size": {"range": [-1.0, 1.0]}}}, "factors.size.range", "-1", "from 0.3 to 2"),
    ({"factors": {"colour": {"levels": ["red"]}}}, "factors.colour", "colour", "did you mean 'color'"),
    ({"label": {"factor": "shape", "levels": ["cube", "banana"]}, "factors": {}}, "label.levels[1]", "banana",
     "one of cube, sphere"),
    ({"label": {"factor": "size", "levels": ["1", "2"]}}, "label.factor", "size", "categorical"),
    ({"sweeps": [{"factor": "hue", "levels": [1, 2]}]}, "sweeps[0].factor", "hue", "not a factor"),
    ({"sweeps": [{"factor": "color", "levels": ["red", "plaid"]}]}, "sweeps[0].levels[1]",
     "plaid", "one of red, green"),
    ({"splits": {"train": 0, "val": 1, "test": 1}}, "splits.train", "0", "greater than 0"),
    ({"splits": {"train": -5, "val": 1, "test": 1}}, "splits.train", "-5", "greater than 0"),
    ({"splits": {"train": 2.5, "val": 1, "test": 1}}, "splits.train", "2.5", "valid integer"),
    ({"splits": {"train": "ten", "val": 1, "test": 1}}, "splits.train", "ten", "valid integer"),
    ({"splits": {"train": 10, "val": 1}}, "splits.test", "missing", "required"),
    ({"factors": {"material": {"levels": ["matte"], "correlation": {"rho": 0.5}}}},
     "factors.material.correlation.pairs", "missing", "which level each class pairs with"),
    ({"factors": {"color": {"levels": ["red", "blue"],
                            "correlation": {"rho": 0.5, "pairs": {"cube": "red", "sphere": "blue",
                                                                  "cone": "green"}}}}},
     "factors.color.correlation.pairs.cone", "green", "one of this factor's levels"),
    ({"factors": {"size": {"levels": [1.0], "range": [0.5, 1]}}}, "factors.size",
     "levels and range", "either range"),
    ({"conflicts": [{"factors": ["shape", "material"]}]}, "conflicts[0].factors", "material",
     "does not indicate a class"),
    ({"factors": {"shape": {"levels": ["cube"]}}}, "factors.shape", "shape", "is the label"),
    ({"factors": {"iso": {"range": [0, 100.5]}}}, "factors.iso.range", "100.5", "an integer"),
    ({"seed": -1}, "seed", "-1", "greater than or equal to 0"),
    ({"name": "Bad Name!"}, "name", "Bad Name!", "lower-case letters, digits, _ and -"),
    ({"background_protocol": {"variants": ["mixed_other"]}}, "background_protocol.variants[0]",
     "mixed_other", "original"),
    # only_fg_neutral needs a training background no class pairs with: 3 levels, 3 classes
    ({"background_protocol": {"variants": ["original", "only_fg_neutral"]}},
     "background_protocol.variants", "only_fg_neutral",
     "add a level no class pairs with to factors.background.levels"),
    ({"background_protocol": {"neutral": "bricks"}}, "background_protocol.neutral", "bricks",
     "one of factors.background.levels: studio, sky, sunset"),
    ({"background_protocol": {"neutral": "sky"}}, "background_protocol.neutral", "sky",
     "a level no class pairs with"),
    ({"background_protocol": {"variants": ["original", "no_fg", "original"]}},
     "background_protocol.variants", "original", "each variant once"),
    # bounds: physical, practical, finite
    ({"sensor": {"read_noise": 1e12}}, "sensor.read_noise", "1000000000000.0",
     "less than or equal to 1000"),
    ({"sensor": {"full_well": 10}}, "sensor.full_well", "10", "greater than or equal to 100"),
    ({"label": {"factor": "shape", "levels": ["cube", "sphere", "cone"],
                "weights": [1, float("inf"), 1]}}, "label.weights[1]", "inf", "finite number"),
    ({"splits": {"train": 10 ** 12, "val": 1, "test": 1}}, "splits.train", "1000000000000",
     "less than or equal to 10000000"),
    ({"evaluate": {"occlusion_patch": 100}}, "evaluate.occlusion_patch", "100",
     "at most render.resolution (64 px)"),
    ({"factors": {"color": {"levels": ["red", "blue"], "correlation": {
        "rho": 0.5, "pairs": {"cube": "red", "sphere": "blue", "cone": "red"}}}},
      "conflicts": [{"factors": ["shape", "color"]}]},
     "factors.color.correlation.pairs", "['cube', 'cone']", "a level of its own"),
    ({"factors": {"background": {"levels": ["studio", "image:nowhere/sky.png"]}}},
     "factors.background.levels[1]", "image:nowhere/sky.png", "no such file"),
]


@pytest.mark.reliability(4)
@pytest.mark.parametrize("change,path,value,allowed", BAD, ids=[b[1] for b in BAD])
def test_bad_input_names_path_value_and_what_is_allowed(change, path, value, allowed):
    # changing the factors would also break the tiny experiment's probes: leave them out then
    exp = bare_experiment() if "factors" in change else tiny_experiment()
    exp.update(change)
    found = problems(exp)
    assert len(found) == 1, found
    msg = found[0]
    assert msg.startswith(path + ":"), msg
    assert value in msg and allowed in msg, msg


@pytest.mark.reliability(5)
@pytest.mark.parametrize("name, content, message", [
    ("sky.png", b"not an image at all", "is not a readable PNG or JPEG image"),
    ("duck.obj", b"# vertices only\nv 0 0 0\nv 1 0 0\nv 0 1 0\n", "holds no faces"),
    ("duck.stl", b"\0" * 90, "holds no faces"),
])
def test_files_named_by_the_experiment_are_read_at_the_door(tmp_path, monkeypatch, name, content,
                                                            message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / name).write_bytes(content)
    if name.endswith(".png"):  # a background a sweep asks for
        exp = bare_experiment(sweeps=[{"factor": "background",
                                       "levels": ["studio", f"image:{name}"]}])
    else:                      # a class
        exp = bare_experiment(label={"factor": "shape", "levels": ["cube", f"mesh:{name}"]},
                              factors={})
    (found,) = problems(exp)
    assert message in found and name in found
    good = tmp_path / "good.obj"
    good.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    from cuelab.factors import REGISTRY
    assert REGISTRY["shape"].file_problem("mesh:good.obj") is None


def test_neutral_background_for_only_fg_neutral():
    """The first training background paired with no class, or the one named; none with every
    level paired, or with rho 1 (training then never shows an unpaired level)."""
    def neutral(background, **protocol):
        exp = tiny_experiment(background_protocol={"base_scenes": 2, **protocol})
        exp["factors"] = dict(exp["factors"], background=background)
        return experiment_from_dict(exp).neutral_background()

    four = ["studio", "sky", "sunset", "white"]
    assert neutral({"levels": four, "correlation": {"rho": 0.7}}) == "white"
    assert neutral({"levels": four, "correlation": {"rho": 0.7, "pairs": {
        "cube": "sky", "sphere": "sunset", "cone": "white"}}}) == "studio"
    assert neutral({"levels": four + ["black"], "correlation": {"rho": 0.7}},
                   neutral="black") == "black"
    assert neutral({"levels": four}) == "studio"  # no correlation: no level says a class
    assert neutral({"levels": four[:3], "correlation": {"rho": 0.7}}) is None
    assert neutral({"levels": four, "correlation": {"rho": 1.0}}) is None
    with_it = {"variants": ["original", "only_fg_neutral"]}
    assert neutral({"levels": four, "correlation": {"rho": 0.7}}, **with_it) == "white"
    exp = tiny_experiment(background_protocol={"base_scenes": 2, **with_it})
    exp["factors"] = dict(exp["factors"], background={"levels": four,
                                                      "correlation": {"rho": 1.0}})
    msg = problems(exp)
    assert len(msg) == 1 and msg[0].startswith("background_protocol.variants:")
    assert "lower factors.background.correlation.rho" in msg[0]
    assert "background_protocol.neutral" in msg[0]


def test_malformed_yaml_names_the_line():
    with pytest.raises(ExperimentError) as err:
        experiment_from_yaml("name: x\nseed: [1\nlabel: {}\n", "p.yaml")
    text = str(err.value)
    assert "p.yaml" in text and "line 3" in text and "well-formed YAML" in text


LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{x}: &{x} [{', '.join([f'*{y}'] * 9)}]\n" for y, x in zip("abcdefgh", "bcdefghi")
) + "name: *i\n"  # 9**9 values once expanded


@pytest.mark.reliability(3)
@pytest.mark.parametrize("content, where, message", [
    (LAUGHS.encode(), "(top level)", "got 'more than 100000 values'; an experiment of at most"),
    (b"name: x\nseed: 1\nname: y\n", "line 3, column 1",
     "well-formed YAML (the key 'name' is given twice in one mapping)"),
    (b"\x7fELF\x02\x01\x01\x00\xd0\xff", "byte 8", "a UTF-8 text file"),
    (("name: " + "[" * 20000 + "]" * 20000).encode(), "(top level)", "nested more than 32 deep"),
    (b"name: x\n" + b"# padding\n" * 200_000, "(top level)", "an experiment file of at most"),
])
def test_hostile_files_are_refused_quickly_and_briefly(tmp_path, content, where, message):
    import time

    path = tmp_path / "params.yaml"
    path.write_bytes(content)
    start = time.perf_counter()
    with pytest.raises(ExperimentError) as err:
        load_experiment(path)
    assert time.perf_counter() - start < 5
    text = str(err.value)
    assert f"  - {where}: " in text and message in text and len(text) < 600


@pytest.mark.reliability(3)
def test_max_images_refuses_a_typo_until_raised_on_purpose():
    """The images of all groups together are at most max_images (default 200,000): 3,000,000
    training images (a typo's extra zeros, or hours of rendering) are refused with the count and
    the way out; raising max_images accepts them. No step reads it: the data does not change."""
    from cuelab.steps import STEPS, reads

    big = {"train": 3_000_000, "val": 6, "test": 6}
    (msg,) = problems(tiny_experiment(splits=big))
    assert msg.startswith("max_images: got 200000 (the default); the experiment asks for "
                          "3000116 images (train 3000000, val 6, test 6, sweep 37, conflict 12, "
                          "protocol 55), more than max_images (200000); raise max_images to at "
                          "least 3000116 if you mean it"), msg
    raised = experiment_from_dict(tiny_experiment(splits=big, max_images=3_000_116))
    assert sum(raised.row_counts().values()) == raised.max_images
    (msg,) = problems(tiny_experiment(max_images=100))
    assert msg.startswith("max_images: got 100; the experiment asks for 146 images")
    assert load_experiment(ROOT / "params.yaml").max_images == 200_000
    tiny = experiment_from_dict(tiny_experiment())
    other = experiment_from_dict(tiny_experiment(max_images=1000))
    assert all("max_images" not in step.reads for step in STEPS.values())
    assert all(reads(tiny, s) == reads(other, s) for s in STEPS)


def test_a_huge_bad_value_is_shown_cut_short():
    exp = tiny_experiment(name="x" * 100_000)
    (text,) = problems(exp)
    assert text.startswith("name: got 'xxxx") and "... (100002 characters)" in text
    assert len(text) < 400


def test_not_a_mapping():
    assert "a mapping of keys" in problems(["a", "list"])[0]


def test_every_problem_is_reported_at_once():
    exp = tiny_experiment(seed=-1, splits={"train": 0, "val": 1, "test": 1})
    assert len(problems(exp)) == 2


@pytest.mark.parametrize("text", [
    "name: x\nseed: [1\n",                                       # malformed YAML
    yaml.safe_dump(tiny_experiment(unknown_key=1)),              # unknown key
    yaml.safe_dump(tiny_experiment(splits={"train": 2.5, "val": 1, "test": 1})),
    yaml.safe_dump(tiny_experiment(splits={"train": 300_000, "val": 1, "test": 1})),  # max_images
])
def test_cli_exits_2_and_writes_nothing(tmp_path, text):
    params = tmp_path / "params.yaml"
    params.write_text(text)
    out = tmp_path / "out" / "scenes.parquet"
    for cmd in (["sample", "--params", str(params), "--out", str(out)],
                ["params", "check", str(params)]):
        r = subprocess.run([BIN / "cuelab", *cmd], capture_output=True, text=True)
        assert r.returncode == 2, r.stderr
        assert "error:" in r.stderr and "Traceback" not in r.stderr
        assert r.stderr.count("\n  - ") == 1  # one message
    assert not out.exists() and not (tmp_path / "out").exists()


def test_params_check_summarises(tmp_path):
    params = write_params(tmp_path / "params.yaml", tiny_experiment())
    r = subprocess.run([BIN / "cuelab", "params", "check", str(params)], capture_output=True,
                       text=True, check=True)
    out = r.stdout
    assert "valid experiment 'tiny'" in out
    assert "classes (shape): cube, sphere, cone" in out
    assert "rho 0.8 (cube->red, sphere->green, cone->blue)" in out
    assert "splits: train 30, val 6, test 6" in out
    assert "images in the scenes table: 146" in out
    from cuelab.sampling import sample_scenes
    renders = sample_scenes(experiment_from_dict(tiny_experiment()))["render_id"].nunique()
    assert f"renders: {renders} distinct" in out and renders < 146
    assert "estimated time: about " in out and " on 2 CPU cores (render " in out
    assert "measured by benchmarks/render_throughput.py" in out


def test_the_estimate_scales_with_pixels_and_samples():
    from cuelab.describe import describe_experiment, estimate_seconds

    exp = experiment_from_dict(tiny_experiment())
    small = estimate_seconds(exp, 1000, 1000)
    big = estimate_seconds(experiment_from_dict(tiny_experiment(
        render={"resolution": 128, "samples": 16})), 1000, 1000)
    assert big["render"] == pytest.approx(small["render"] * 4 * 4)
    assert big["sensor"] == pytest.approx(small["sensor"] * 4)
    assert big["train"] == pytest.approx(small["train"] * 4)
    resnet = experiment_from_dict(tiny_experiment(train={"model": "resnet18"}))
    assert "train not estimated for resnet18" in describe_experiment(resnet)
    huge = experiment_from_dict(tiny_experiment(splits={"train": 1_000_000, "val": 6, "test": 6},
                                                max_images=2_000_000))
    text = describe_experiment(huge)  # not sampled: an upper bound, at once
    assert "renders: at most 1000116 (not counted" in text
    assert re.search(r"about [\d.]+ (h|days) on 2 CPU cores", text), text
