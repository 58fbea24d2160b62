"""The renderer, with the real Blender at 32x32: each factor's effect on the pixels, exact
masks, determinism, resume after a kill, shards."""

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from conftest import BIN, bare_experiment
from cuelab.config import experiment_from_dict
from cuelab.errors import CuelabError
from cuelab.factors import REGISTRY, SCENE_FACTOR_NAMES
from cuelab.render import read_renders, render
from cuelab.render.contact_sheet import contact_sheet
from cuelab.sampling import sample_scenes
from cuelab.scenes import render_ids

pytestmark = pytest.mark.slow
RENDER = {"resolution": 32, "samples": 2, "device": "cpu", "chunk_size": 4}


def experiment(**render):
    return experiment_from_dict(bare_experiment(render={**RENDER, **render}))


def table(rows: list[dict]) -> pd.DataFrame:
    """A scenes table of hand-made rows: registry defaults plus the given values."""
    full = []
    for i, row in enumerate(rows):
        base = {n: REGISTRY[n].default for n in SCENE_FACTOR_NAMES}
        base.update(image_id=f"t-{i:03d}", seed=1000 + i)
        base.update(row)
        full.append(base)
    df = pd.DataFrame(full)
    df["render_id"] = render_ids(df)
    return df


CASES = {
    "base": {},
    "red": {"color": "red"},
    "blue": {"color": "blue"},
    "small": {"size": 0.5},
    "large": {"size": 1.5},
    "sky": {"background": "sky"},
    "checker_bg": {"background": "checker"},
    "occluded": {"occluder": "box"},
    "white_on_black": {"color": "white", "background": "black", "material": "matte"},
    "sphere": {"shape": "sphere"},
    "left": {"position_x": -0.5},
    "dim": {"light_intensity": 0.2},
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("renders")
    df = table(list(CASES.values()))
    render(experiment(), df, out, workers=2, progress=False)
    r = read_renders(out)
    index = {rid: i for i, rid in enumerate(r["render_id"])}
    return {name: {k: r[k][index[rid]] for k in ("rgb", "mask", "visible_fraction")}
            for name, rid in zip(CASES, df.render_id)}


def test_outputs_have_the_right_shape_and_type(rendered):
    img = rendered["base"]
    assert img["rgb"].shape == (32, 32, 3) and img["rgb"].dtype == np.uint8
    assert img["mask"].shape == (32, 32) and img["mask"].dtype == bool
    assert 30 < img["mask"].sum() < 32 * 32 / 2


def test_colour_reaches_the_object_pixels(rendered):
    for name, channel in (("red", 0), ("blue", 2)):
        px = rendered[name]["rgb"][rendered[name]["mask"]].astype(float).mean(axis=0)
        assert px.argmax() == channel and px[channel] > 1.5 * np.delete(px, channel).max()


def test_size_changes_the_mask(rendered):
    assert rendered["large"]["mask"].sum() > 2 * rendered["small"]["mask"].sum()


def test_background_changes_pixels_but_not_the_mask_or_the_object(rendered):
    base = rendered["base"]
    for name in ("sky", "checker_bg"):
        other = rendered[name]
        assert np.array_equal(other["mask"], base["mask"])
        background = ~base["mask"]
        assert np.abs(other["rgb"][background].astype(int) - base["rgb"][background]).mean() > 20
        # the object is lit the same way: backgrounds are not light sources
        diff = np.abs(other["rgb"][base["mask"]].astype(int) - base["rgb"][base["mask"]])
        assert diff.mean() < 3


def test_occluder_lowers_the_visible_fraction(rendered):
    occ, base = rendered["occluded"], rendered["base"]
    assert 0.05 < occ["visible_fraction"] < 0.95
    assert base["visible_fraction"] == 1.0
    # the visible mask is the unoccluded silhouette minus what the occluder hides
    assert occ["mask"].sum() < base["mask"].sum()
    assert not (occ["mask"] & ~base["mask"]).any()
    assert occ["visible_fraction"] == pytest.approx(occ["mask"].sum() / base["mask"].sum(),
                                                    abs=0.02)


def test_mask_is_exactly_the_object(rendered):
    img = rendered["white_on_black"]
    bright = img["rgb"].max(axis=2) > 40
    assert (bright & img["mask"]).sum() / (bright | img["mask"]).sum() > 0.9
    # beyond the mask's anti-aliased one-pixel rim, only the black background
    m = img["mask"]
    rim = m.copy()
    rim[1:] |= m[:-1]
    rim[:-1] |= m[1:]
    rim[:, 1:] |= m[:, :-1]
    rim[:, :-1] |= m[:, 1:]
    assert img["rgb"][~rim].max() <= 2 and img["rgb"][m].min() > 40


def test_shape_position_and_light(rendered):
    base = rendered["base"]
    assert not np.array_equal(rendered["sphere"]["mask"], base["mask"])
    cols = np.nonzero(rendered["left"]["mask"].any(axis=0))[0]
    base_cols = np.nonzero(base["mask"].any(axis=0))[0]
    assert cols.mean() < base_cols.mean() - 4
    assert rendered["dim"]["rgb"][base["mask"]].mean() < 0.6 * base["rgb"][base["mask"]].mean()


def test_deterministic_and_independent_of_order_and_chunking(tmp_path):
    df = table(list(CASES.values())[:6])
    render(experiment(), df, tmp_path / "a", progress=False)
    render(experiment(), df, tmp_path / "b", progress=False)
    for f in sorted((tmp_path / "a").iterdir()):
        assert f.read_bytes() == (tmp_path / "b" / f.name).read_bytes(), f.name
    # the same rows in reverse order and other chunks give the same pixels per render
    render(experiment(chunk_size=5), df.iloc[::-1], tmp_path / "c", progress=False)
    a, c = read_renders(tmp_path / "a"), read_renders(tmp_path / "c")
    order = {rid: i for i, rid in enumerate(c["render_id"])}
    for i, rid in enumerate(a["render_id"]):
        assert np.array_equal(a["rgb"][i], c["rgb"][order[rid]])
        assert np.array_equal(a["mask"][i], c["mask"][order[rid]])


def test_shards_are_disjoint_and_their_union_is_the_whole(tmp_path):
    df = table([{"rotation": float(r)} for r in range(0, 360, 30)])  # 12 renders, 3 chunks
    render(experiment(), df, tmp_path / "whole", progress=False)
    first = render(experiment(), df, tmp_path / "sharded", shard="0/2", progress=False)
    names = {f.name for f in (tmp_path / "sharded").iterdir()}
    assert names == {"chunk-00000.npz", "chunk-00000.json", "chunk-00002.npz",
                     "chunk-00002.json"}
    second = render(experiment(), df, tmp_path / "sharded", shard="1/2", progress=False)
    assert first.rendered + second.rendered == 12 and second.reused == 0
    for f in (tmp_path / "whole").iterdir():
        assert f.read_bytes() == (tmp_path / "sharded" / f.name).read_bytes()


def sampled_scenes(folder: Path, train: int = 40, **render) -> tuple[Path, Path]:
    """A params file of `train` + 2 renders in chunks of 6 (42: 7 chunks) and its sampled scenes,
    for the CLI to render."""
    exp = bare_experiment(splits={"train": train, "val": 1, "test": 1},
                          factors={"rotation": {"range": [0, 360]}},
                          render={**RENDER, "chunk_size": 6, **render})
    params = folder / "params.yaml"
    params.write_text(yaml.safe_dump(exp))
    scenes = folder / "scenes.parquet"
    subprocess.run([BIN / "cuelab", "sample", "--params", params, "--out", scenes], check=True)
    return params, scenes


def test_resume_after_kill_renders_only_what_is_missing(tmp_path):
    """Killed after its second chunk (of 67), a render resumes from the whole chunks it left.
    Images slow enough (17 s for all 67 chunks on one worker) that the kill lands part-way
    even where a loaded machine holds this test's look at the folder for seconds: at 32 px and
    2 samples a fast machine rendered 42 scenes before the kill landed."""
    params, scenes = sampled_scenes(tmp_path, train=400, resolution=64, samples=64)
    cmd = [BIN / "cuelab", "render", "--params", params, "--scenes", scenes, "--workers", "1"]
    killed = tmp_path / "killed"
    proc = subprocess.Popen(cmd + ["--out", killed], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (killed / "chunk-00001.json").exists() and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = {f.name for f in killed.glob("chunk-*.json")}
    assert 2 <= len(done) < 67, done  # killed part-way
    r = subprocess.run(cmd + ["--out", killed], capture_output=True, text=True, check=True)
    reused = int(r.stdout.split("reused ")[1].split()[0])
    assert reused == 6 * len(done)
    subprocess.run(cmd + ["--out", tmp_path / "whole"], capture_output=True, check=True)
    whole = sorted(f.name for f in (tmp_path / "whole").iterdir())
    assert sorted(f.name for f in killed.iterdir()) == whole  # no leftovers
    for name in whole:
        assert (killed / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()


def test_a_render_worker_that_dies_is_a_clean_error_not_a_hang(tmp_path):
    """The kernel's out-of-memory killer takes a Blender worker mid-render: the step stops with
    a message saying so (multiprocessing.Pool would wait for the lost chunk forever). Enough
    scenes, slow enough to render, that the kill, after the first chunk, lands mid-render
    whatever the machine's speed and load (at 32 px and 2 samples two workers rendered 402 of
    them in 2 s on a fast one before the kill, and a loaded machine can hold this test's look at
    the folder for seconds while the workers write to it)."""
    params, scenes = sampled_scenes(tmp_path, train=4000, resolution=64, samples=64)
    out = tmp_path / "renders"
    proc = subprocess.Popen([BIN / "cuelab", "render", "--params", params, "--scenes", scenes,
                             "--workers", "2", "--out", out], start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "chunk-00000.json").exists() and proc.poll() is None \
            and time.time() < deadline:
        time.sleep(0.05)
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    workers = [int(c) for c in children
               if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]
    assert workers, children
    os.kill(workers[0], signal.SIGKILL)
    try:
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 2, err[-2000:]  # cuelab's exit status for an error it explains
    assert "a Blender worker died" in err and "--workers, now 2" in err, err[-2000:]
    assert "Traceback" not in err
    assert not list(out.glob(".chunk-*.tmp"))  # nothing half-written left in the output


def test_user_mesh_and_image_background(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tetra.obj").write_text(
        "v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nf 1 3 2\nf 1 2 4\nf 1 4 3\nf 2 3 4\n")
    stripes = np.zeros((32, 32, 3), np.uint8)
    stripes[:, ::4] = (255, 0, 0)
    Image.fromarray(stripes).save(tmp_path / "bg.png")
    df = table([{"shape": "mesh:tetra.obj", "background": "image:bg.png"}, {}])
    render(experiment(), df, tmp_path / "out", progress=False)
    r = read_renders(tmp_path / "out")
    tetra, cube = r["mask"][0], r["mask"][1]
    assert tetra.sum() > 20 and not np.array_equal(tetra, cube)
    background = r["rgb"][0][~tetra].astype(int)
    assert background[:, 0].max() > 200 and background[:, 0].min() < 60  # the stripes show


@pytest.mark.parametrize("change,message", [
    ({"shape": "banana"}, "row 1 (t-001): shape = 'banana': not allowed"),
    ({"size": 9.0}, "row 1 (t-001): size = 9.0: not allowed; size must be a number from 0.3"),
    ({"shape": "mesh:missing.obj"}, "row 1 (t-001): shape = 'mesh:missing.obj': no such file"),
    ({"background": "image:nowhere.png"}, "background = 'image:nowhere.png': no such file"),
])
def test_impossible_rows_fail_before_any_rendering(tmp_path, change, message):
    df = table([{}, change])
    with pytest.raises(CuelabError) as err:
        render(experiment(), df, tmp_path / "out", progress=False)
    assert message in str(err.value)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_sensor_rows_share_renders(tmp_path):
    exp = experiment_from_dict(bare_experiment(
        splits={"train": 2, "val": 1, "test": 1}, render=RENDER,
        sweeps=[{"factor": "jpeg_quality", "levels": [0, 50, 10], "base_scenes": 2}]))
    df = sample_scenes(exp)
    summary = render(exp, df, tmp_path / "out", progress=False)
    assert summary.rendered == 4 + 2 == df.render_id.nunique() < len(df)


def test_contact_sheet_has_a_row_per_scene_factor(tmp_path):
    out = tmp_path / "sheet.png"
    contact_sheet(experiment(), out, workers=2)
    sheet = np.asarray(Image.open(out))
    assert sheet.shape[0] == len(SCENE_FACTOR_NAMES) * (96 + 14)
    tiles = sheet[:96, 150:150 + 96 * 8]  # the shape row: eight different silhouettes
    assert len({tiles[:, i * 96:(i + 1) * 96].tobytes() for i in range(8)}) == 8


def test_contact_sheet_levels_are_renderable_values_of_every_scene_factor():
    """Also for an integer scene factor (none is in the registry yet): whole levels only."""
    from cuelab.factors import REGISTRY, Factor
    from cuelab.render.contact_sheet import sheet_rows
    from cuelab.scenes import check_values

    lights = Factor("test_lights", "scene", "An integer factor added by a test.", default=1,
                    low=0, high=4, integer=True)
    rows = sheet_rows({**REGISTRY, lights.name: lights})
    assert sorted(rows[rows.factor == "test_lights"].test_lights) == [0, 1, 2, 3, 4]
    check_values(sheet_rows(), SCENE_FACTOR_NAMES, "rendered")  # as the renderer checks them
    for name in SCENE_FACTOR_NAMES:
        assert all(REGISTRY[name].accepts(v) for v in rows[rows.factor == name][name])


def test_an_integer_factor_with_a_fraction_is_refused_before_rendering(tmp_path):
    df = table([{"rotation": 10.0, "iso": 800.5}])  # a sensor factor: checked before rendering
    with pytest.raises(CuelabError, match=r"iso = 800\.5: not allowed; iso must be an integer"):
        render(experiment(), df, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_palette_change_renders_again(tmp_path, monkeypatch):
    """The palette is in the renderer's fingerprint: a new shade of red redoes the renders."""
    import shutil

    import cuelab.render as R

    df = table([{"color": "red"}])
    assert render(experiment(), df, tmp_path / "out", progress=False).rendered == 1
    assert render(experiment(), df, tmp_path / "out", progress=False).reused == 1
    copy = tmp_path / "cuelab"
    shutil.copytree(Path(R.__file__).parents[1], copy,
                    ignore=shutil.ignore_patterns("__pycache__"))
    scene = copy / "factors" / "scene.py"
    scene.write_text(scene.read_text().replace('"red": (200, 30, 30)', '"red": (210, 30, 30)'))
    edited = R.renderer_fingerprint(copy)
    assert edited != R.renderer_fingerprint()
    monkeypatch.setattr(R, "renderer_fingerprint", lambda: edited)
    assert render(experiment(), df, tmp_path / "out", progress=False).rendered == 1


def test_chunks_from_another_renderer_are_rendered_again(tmp_path):
    import json

    df = table([{"rotation": float(r)} for r in range(0, 120, 30)])  # one chunk of 4
    render(experiment(), df, tmp_path, progress=False)
    assert render(experiment(), df, tmp_path, progress=False).reused == 4
    manifest = tmp_path / "chunk-00000.json"
    written = json.loads(manifest.read_text())
    assert written["renderer"].startswith("bpy 5.0.1, studio ")
    manifest.write_text(json.dumps(written | {"renderer": "bpy 4.2, studio 0000"}))
    again = render(experiment(), df, tmp_path, progress=False)
    assert again.rendered == 4 and again.reused == 0


def test_every_scene_factor_has_one_owner_in_the_studio():
    """Checked in a process of its own: importing bpy here would break the render workers."""
    import sys

    check = """
import pytest
from cuelab.factors import SCENE_FACTOR_NAMES
from cuelab.render.studio import APPLY, OWNERS, PLACEMENTS, owners
assert sorted(OWNERS) == sorted(SCENE_FACTOR_NAMES)
with pytest.raises(TypeError, match="ambient: no apply function or placement"):
    owners({k: f for k, f in APPLY.items() if k != "ambient"}, PLACEMENTS)
with pytest.raises(TypeError, match="size: owned by apply, placement target"):
    owners({**APPLY, "size": APPLY["shape"]}, PLACEMENTS)
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_ambient_light_fills_the_shadows(tmp_path):
    """The new scene factor: 0 leaves the key light alone (darker shadows), more lifts them;
    the default is the studio as it was."""
    df = table([{"ambient": a, "light_azimuth": 150.0} for a in (0.0, 1.0, 3.0)])
    render(experiment(), df, tmp_path / "out", progress=False)
    out = read_renders(tmp_path / "out")
    by_id = dict(zip(out["render_id"], range(len(out["render_id"]))))
    means = [out["rgb"][by_id[rid]][out["mask"][by_id[rid]]].mean() for rid in df.render_id]
    assert means[0] < means[1] < means[2]
    # the default value changes no render id: a render of the old studio is still valid
    assert df.render_id[1] == table([{"light_azimuth": 150.0}]).render_id[0]


# --- the foreground factor (the background protocol's Only-BG-B, Only-BG-T, No-FG) ----------------

FOREGROUNDS = ("object", "removed", "black", "tiled")
FOREGROUND_SCENES = [  # two base scenes per backdrop: No-FG must not tell them apart
    {"background": "checker", "color": "red"},
    {"background": "checker", "shape": "torus", "rotation": 40.0, "position_x": 0.3},
    {"background": "voronoi", "shape": "monkey", "texture": "stripes", "size": 1.4},
    {"background": "voronoi", "shape": "cone", "position_y": -0.3, "color": "yellow"},
    {"background": "sunset", "shape": "sphere", "color": "blue", "position_x": -0.2},
]


def dilated(mask: np.ndarray) -> np.ndarray:
    """The mask grown by one pixel (8-neighbourhood): where the object's soft edge can reach."""
    out = mask.copy()
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            out |= np.roll(np.roll(mask, dy, 0), dx, 1)  # wraps at the frame: only larger
    return out


@pytest.fixture(scope="module")
def foregrounds(tmp_path_factory):
    """[{foreground: {"rgb", "mask"}}] per scene of FOREGROUND_SCENES, at 48 px."""
    rows = [dict(scene, foreground=fg) for scene in FOREGROUND_SCENES for fg in FOREGROUNDS]
    df = table(rows)
    out = tmp_path_factory.mktemp("foregrounds")
    render(experiment(resolution=48), df, out, workers=2, progress=False)
    r = read_renders(out)
    index = {rid: i for i, rid in enumerate(r["render_id"])}
    images = [{k: r[k][index[rid]] for k in ("rgb", "mask")} for rid in df.render_id]
    return [dict(zip(FOREGROUNDS, images[i:i + len(FOREGROUNDS)]))
            for i in range(0, len(images), len(FOREGROUNDS))]


def test_every_foreground_keeps_the_objects_mask(foregrounds):
    for scene in foregrounds:
        mask = scene["object"]["mask"]
        assert 40 < mask.sum() < 48 * 48 / 2
        for fg in FOREGROUNDS:
            assert np.array_equal(scene[fg]["mask"], mask), fg


def test_no_fg_is_the_backdrop_without_a_trace_of_the_object(foregrounds):
    by_backdrop: dict[str, list] = {}
    for spec, scene in zip(FOREGROUND_SCENES, foregrounds):
        original, removed, mask = scene["object"]["rgb"], scene["removed"]["rgb"], \
            scene["object"]["mask"]
        # outside the mask's one-pixel dilation, the original's pixels; inside, other ones
        outside = ~dilated(mask)
        assert np.array_equal(removed[outside], original[outside])
        assert np.abs(removed[mask].astype(int) - original[mask]).mean() > 20
        by_backdrop.setdefault(spec["background"], []).append(removed)
    # the same backdrop whatever object stood there and wherever: no object pixel, no soft edge
    for backdrop, pictures in by_backdrop.items():
        for other in pictures[1:]:
            assert np.array_equal(other, pictures[0]), backdrop


def test_only_bg_b_is_black_exactly_inside_the_mask(foregrounds):
    for scene in foregrounds:
        black, removed, mask = scene["black"]["rgb"], scene["removed"]["rgb"], \
            scene["object"]["mask"]
        assert (black[mask] == 0).all()
        assert np.array_equal(black[~mask], removed[~mask])


def test_only_bg_t_fills_the_mask_with_the_backdrops_own_colours(foregrounds):
    for spec, scene in zip(FOREGROUND_SCENES, foregrounds):
        tiled, removed, mask = scene["tiled"]["rgb"], scene["removed"]["rgb"], \
            scene["object"]["mask"]
        assert np.array_equal(tiled[~mask], removed[~mask])
        backdrop_colours = {tuple(c) for c in removed[~mask]}
        inside = {tuple(c) for c in tiled[mask]}
        assert inside <= backdrop_colours, spec
        if spec["background"] in ("checker", "voronoi"):  # texture, not one flat colour
            assert len(inside) > 1, spec
        # tiles that continue the backdrop: close to what the object hid (a gradient along
        # itself, a checker in step), far from the black of Only-BG-B
        hidden = np.abs(tiled[mask].astype(int) - removed[mask]).mean()
        assert hidden < 0.5 * np.abs(scene["black"]["rgb"][mask].astype(int)
                                     - removed[mask]).mean(), spec


def test_no_fg_keeps_the_occluder(tmp_path):
    """Only the target goes: an occluder in front of it stays where it was."""
    df = table([{"occluder": "box", "foreground": fg, "background": "bricks", "seed": 7}
                for fg in ("object", "removed")] + [{"background": "bricks",
                                                     "foreground": "removed"}])
    render(experiment(), df, tmp_path / "out", progress=False)
    r = read_renders(tmp_path / "out")
    index = {rid: i for i, rid in enumerate(r["render_id"])}
    (original, o_mask, o_frac), (removed, r_mask, r_frac), (backdrop, _, _) = [
        (r["rgb"][index[rid]], r["mask"][index[rid]], r["visible_fraction"][index[rid]])
        for rid in df.render_id]
    assert np.array_equal(o_mask, r_mask) and o_frac == r_frac < 1
    interior = ~dilated(~o_mask)  # (at the mask's rim, the occluder's soft edge may reach)
    assert interior.sum() > 20
    assert np.array_equal(removed[interior], backdrop[interior])  # no target pixel left
    occluder = ~dilated(o_mask) & (np.abs(original.astype(int) - backdrop).max(-1) > 30)
    assert occluder.sum() > 10  # the occluder shows, and is kept
    assert np.array_equal(removed[~dilated(o_mask)], original[~dilated(o_mask)])


def test_the_default_foreground_changes_no_render_id():
    rows = table([{}, {"color": "red", "background": "sky"}])
    without = {k: f for k, f in REGISTRY.items() if k != "foreground"}
    assert render_ids(rows) == render_ids(rows.drop(columns="foreground"), without)
    assert render_ids(rows) != render_ids(rows.assign(foreground="removed"))


# --- texture contrast on every palette colour -----------------------------------------------------

def _pattern_contrast(rgb: np.ndarray, mask: np.ndarray, plain: np.ndarray):
    """Luma (8-bit sRGB, Rec. 709 weights) of the object's pixels inside its mask (less a
    pixel's rim) split in two by Otsu's threshold: the difference between the two groups' means,
    and whether the pattern (the group farther from the untextured render) is the lighter."""
    import cv2

    inner = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    luma = rgb[inner].astype(float) @ [0.2126, 0.7152, 0.0722]
    t, _ = cv2.threshold(np.round(luma).astype(np.uint8).reshape(-1, 1), 0, 255,
                         cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    light, dark = luma[luma > t].mean(), luma[luma <= t].mean()
    base = (plain[inner].astype(float) @ [0.2126, 0.7152, 0.0722]).mean()
    return light - dark, abs(light - base) > abs(dark - base)


def test_every_texture_shows_on_every_palette_colour(tmp_path):
    """A colour sweep intervenes on the colour alone: the pattern stays visible on every palette
    colour (a pattern 0.12 x the base colour had 9 to 40 DN of contrast on black, red, blue,
    magenta, purple and brown, 59 to 116 on the rest). Measured on a cube's front face, lit
    evenly."""
    from cuelab.factors import PALETTE
    from cuelab.factors.scene import LIGHT_PATTERN_COLORS

    textures = ("none", "checker", "stripes", "dots")
    pose = {"shape": "cube", "size": 1.5, "camera_elevation": 0.0, "rotation": 0.0}
    df = table([dict(pose, color=c, texture=t) for c in PALETTE for t in textures])
    render(experiment(resolution=64, samples=4), df, tmp_path / "out", workers=2,
           progress=False)
    r = read_renders(tmp_path / "out")
    index = {rid: i for i, rid in enumerate(r["render_id"])}
    got = {}
    for c in PALETTE:
        ids = [index[rid] for rid in df.render_id[df.color == c]]
        plain = r["rgb"][ids[0]]
        for t, i in zip(textures[1:], ids[1:]):
            got[c, t] = _pattern_contrast(r["rgb"][i], r["mask"][i], plain)
    low = {k: round(v[0], 1) for k, v in got.items() if v[0] < 55}
    assert not low, f"pattern contrast below 55 DN: {low}"
    # the pattern is a lighter tint exactly on the colours the registry says
    assert {c for (c, _), (_, lighter) in got.items() if lighter} == LIGHT_PATTERN_COLORS


@pytest.mark.reliability(7)
def test_a_second_render_into_the_same_folder_is_refused_while_the_first_runs(tmp_path):
    """Two whole runs into one folder would delete each other's chunks: the second is refused
    at once and the first finishes complete."""
    import sys

    from conftest import tiny_experiment, write_params
    from cuelab.sampling import sample

    params = write_params(tmp_path / "params.yaml", tiny_experiment(
        render={"resolution": 32, "samples": 1, "device": "cpu", "chunk_size": 8}))
    sample(params, tmp_path / "scenes.parquet")
    out = tmp_path / "renders"
    out.mkdir()
    first = subprocess.Popen([sys.executable, "-m", "cuelab.cli", "render", "--params", params,
                              "--scenes", tmp_path / "scenes.parquet", "--out", out,
                              "--workers", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    while first.poll() is None and not list(out.glob("chunk-*")):
        time.sleep(0.05)
    assert first.poll() is None, first.stderr.read()
    with pytest.raises(CuelabError, match="another render is writing this folder"):
        render(params, tmp_path / "scenes.parquet", out, progress=False)
    assert first.wait() == 0
    again = render(params, tmp_path / "scenes.parquet", out, progress=False)
    assert again.rendered == 0 and again.reused > 0  # everything the first wrote is there


def test_the_shared_cache_renders_each_distinct_scene_once(tmp_path):
    """Two tables that share three of their scenes, rendered into two folders with one cache:
    nine renders in all, and the chunks are the bytes a run without the cache writes."""
    cache = tmp_path / "cache"
    a = table([{"rotation": float(r)} for r in range(0, 180, 30)])  # 0 ... 150
    b = table([{"rotation": float(r)} for r in range(90, 270, 30)])  # 90 ... 240
    first = render(experiment(), a, tmp_path / "a", cache=cache, progress=False)
    assert (first.rendered, first.cached) == (6, 0)
    second = render(experiment(), b, tmp_path / "b", cache=cache, progress=False)
    assert (second.rendered, second.cached) == (3, 3)
    assert len(list(cache.rglob("*.npz"))) == 9 == len({*a.render_id, *b.render_id})
    alone = render(experiment(), b, tmp_path / "alone", cache="off", progress=False)
    assert (alone.rendered, alone.cached) == (6, 0)
    for f in sorted((tmp_path / "alone").glob("chunk-*.npz")):
        assert f.read_bytes() == (tmp_path / "b" / f.name).read_bytes(), f.name
    # all of a table in the cache: no Blender; other chunk sizes take the same renders
    again = render(experiment(chunk_size=5), a, tmp_path / "again", cache=cache, progress=False)
    assert (again.rendered, again.cached) == (0, 6)
    assert "6 taken from the shared render cache" in str(again)
    # an entry cut off is a miss: rendered again and replaced; other render settings miss all
    (entry,) = cache.rglob(f"{a.render_id.iloc[0]}.npz")
    entry.write_bytes(entry.read_bytes()[:100])
    mended = render(experiment(), a, tmp_path / "mended", cache=cache, progress=False)
    assert (mended.rendered, mended.cached) == (1, 5)
    assert entry.stat().st_size > 100
    other = render(experiment(samples=3), b, tmp_path / "other", cache=cache, progress=False)
    assert (other.rendered, other.cached) == (6, 0)


def test_the_cache_lives_in_the_dvc_project(tmp_path, monkeypatch):
    from cuelab.render.cache import default_folder

    monkeypatch.delenv("CUELAB_RENDER_CACHE", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    assert default_folder(tmp_path / "data" / "renders") is None  # no project: no cache
    (tmp_path / ".dvc").mkdir()
    assert default_folder(tmp_path / "data" / "renders") == \
        tmp_path.resolve() / ".cuelab" / "render-cache"
    monkeypatch.setenv("DVC_ROOT", str(tmp_path / "origin"))  # a queued DVC experiment's copy
    assert default_folder(tmp_path / "data" / "renders") == \
        tmp_path / "origin" / ".cuelab" / "render-cache"
    monkeypatch.setenv("CUELAB_RENDER_CACHE", "off")
    assert default_folder(tmp_path / "data" / "renders") is None
