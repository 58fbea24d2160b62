"""The data gate: clean data passes; each injected fault fails, naming what broke and where."""

import json
import shutil
import subprocess

import numpy as np
import pytest

from conftest import BIN
from cuelab.data import load_split, read_index
from cuelab.scenes import read_scenes, write_table
from cuelab.validate import ValidationFailed, validate

pytestmark = pytest.mark.slow


@pytest.fixture
def data(tiny_dataset, tmp_path):
    """A private copy of the tiny dataset, to break."""
    shutil.copytree(tiny_dataset["images"], tmp_path / "images")
    shutil.copy(tiny_dataset["scenes"], tmp_path / "scenes.parquet")
    return {"params": tiny_dataset["params"], "scenes": tmp_path / "scenes.parquet",
            "images": tmp_path / "images", "docs": tmp_path / "docs",
            "summary": tmp_path / "validation.json"}


def run(d):
    return validate(d["params"], d["scenes"], d["images"], d["docs"], d["summary"],
                    progress=False)


def failures_of(d) -> dict[str, list[str]]:
    """{description: offending ids} of a run that must fail."""
    with pytest.raises(ValidationFailed) as e:
        run(d)
    summary = json.loads(d["summary"].read_text())
    assert not summary["passed"] and summary["failed"] == len(summary["failures"]) > 0
    assert (d["docs"] / "index.html").is_file()  # the Data Docs say why, too
    for f in summary["failures"]:
        assert f["description"] in str(e.value)
    return {f["description"]: f["ids"] for f in summary["failures"]}


def edit_scenes(d, change):
    t = read_scenes(d["scenes"])
    change(t)
    write_table(t, d["scenes"])


def shard_of(d, image_id):
    row = read_index(d["images"]).set_index("image_id").loc[image_id]
    return d["images"] / f"{row.shard}.images.npy", int(row.offset)


def test_clean_data_passes_and_records_pixel_statistics(data):
    summary = run(data)
    assert summary.passed and summary.failures == []
    assert summary.expectations > 50
    saved = json.loads(data["summary"].read_text())
    assert saved["passed"] and saved["images"] == len(read_scenes(data["scenes"]))
    train = load_split(data["images"], "train")
    assert saved["pixel_stats"]["train"]["mean"] == pytest.approx(train.images.mean(), rel=1e-4)
    assert (data["docs"] / "index.html").is_file()
    assert "passed" in str(summary) and "Data Docs" in str(summary)


def test_truncated_image_file(data):
    path, _ = shard_of(data, "train-000000")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    failed = failures_of(data)
    ids = failed["every scene has a readable image and mask"]
    assert "train-000000" in ids and "train-000029" in ids  # the whole shard is unreadable
    with pytest.raises(ValidationFailed, match=r"unreadable: .*train-00000\.\*\.npy: "):
        run(data)  # and the shard is named


def test_blank_image(data):
    path, offset = shard_of(data, "val-000002")
    images = np.load(path)
    images[offset] = 90
    np.save(path, images)
    failed = failures_of(data)
    assert [ids for desc, ids in failed.items() if desc.startswith("no blank")] == [
        ["val-000002"]]


def test_missing_image(data):
    index = read_index(data["images"])
    index[index.image_id != "test-000003"].to_parquet(data["images"] / "index.parquet",
                                                      index=False)
    assert failures_of(data) == {"every scene has a readable image and mask": ["test-000003"]}


def test_wrong_label(data):
    def relabel(t):
        t.loc[t.image_id == "train-000004", "label"] = (t.loc[t.image_id == "train-000004",
                                                              "label"] + 1) % 3
    edit_scenes(data, relabel)
    failed = failures_of(data)
    assert failed["the dataset's label is the scene's label"] == ["train-000004"]
    assert failed["the label is the class of the `shape` value"] == ["train-000004"]


def test_imbalanced_split(data):
    # five cubes become spheres, consistently everywhere: only the balance is wrong
    t = read_scenes(data["scenes"])
    cubes = t[(t.split == "train") & (t.label == 0)].image_id.head(5)
    t.loc[t.image_id.isin(cubes), ["shape", "label"]] = ["sphere", 1]
    write_table(t, data["scenes"])
    index = read_index(data["images"])
    index.loc[index.image_id.isin(cubes), "label"] = 1
    index.to_parquet(data["images"] / "index.parquet", index=False)
    failed = failures_of(data)
    ids = failed["each class's share of each split within tolerance of the label weights"]
    assert ids == ["train/cube", "train/sphere"]


def test_out_of_domain_factor_value(data):
    edit_scenes(data, lambda t: t.__setitem__(
        "color", t["color"].where(t.image_id != "val-000001", "purple")))
    failed = failures_of(data)
    assert list(failed) == ["`color` is one of its declared levels: blue, green, orange, red"]
    assert failed[next(iter(failed))] == ["val-000001"]


@pytest.mark.reliability(9)
def test_an_image_swapped_or_replaced_after_the_sensor_step_is_named(data):
    """Two training images of different classes swapped, one replaced by noise: statistics
    cannot see it, the content hashes the sensor step recorded do."""
    path, i = shard_of(data, "train-000001")
    _, j = shard_of(data, "train-000002")
    images = np.load(path)
    images[[i, j]] = images[[j, i]]
    np.save(path, images)
    path, k = shard_of(data, "val-000003")
    images = np.load(path)
    images[k] = np.random.default_rng(0).integers(0, 256, images[k].shape, dtype=np.uint8)
    np.save(path, images)
    failed = failures_of(data)
    assert list(failed) == ["every image and mask is as the sensor step made it (the content "
                            "hash it recorded in index.parquet; else swapped, replaced or edited "
                            "since)"]
    assert sorted(failed[next(iter(failed))]) == ["train-000001", "train-000002", "val-000003"]
    index = read_index(data["images"])
    assert index.render_id.notna().all()  # and the render each image came from


def test_duplicate_across_splits(data):
    src, i = shard_of(data, "train-000007")
    dst, j = shard_of(data, "test-000001")
    picture = np.load(src)[i]
    images = np.load(dst)
    images[j] = picture
    np.save(dst, images)
    failed = failures_of(data)
    assert sorted(failed["no identical image in two splits"]) == ["test-000001", "train-000007"]


def test_broken_sweep_pair(data):
    def break_pairs(t):
        # one level of one base scene lost, and another pair no longer "all else equal"
        t.drop(t.index[t.image_id == "sweep-color-0001-02"], inplace=True)
        t.loc[t.image_id == "sweep-color-0003-01", "size"] = 1.1
    edit_scenes(data, break_pairs)
    failed = failures_of(data)
    assert failed["every base scene at every level"] == ["sweep-color-0001"]
    assert failed["sweep pairs change only the swept factor (all else equal)"] == [
        "sweep-color-0003"]
    # and the image with no scene row is named too
    assert failed["every image has a row in the scenes table"] == ["sweep-color-0001-02"]


def test_wrong_split_size_and_conflict_not_in_conflict(data):
    def change(t):
        t.drop(t.index[t.image_id == "val-000005"], inplace=True)
        row = t.image_id == "conflict-shape_vs_color-0000"
        t.loc[row, "class_b"] = t.loc[row, "class_a"]
    edit_scenes(data, change)
    failed = failures_of(data)
    assert failed["each split has its specified size"] == ["val"]
    assert failed["conflict rows: each cue says its own class, they differ, and every other cue is held as `cues` records"] == [
        "conflict-shape_vs_color-0000"]


def test_a_held_cue_that_points_to_a_third_class_fails_the_gate(data):
    def change(t):
        # background is held balanced (all its levels are paired); send one image's to the
        # class neither cue in conflict says
        row = t.image_id == "conflict-shape_vs_color-0003"
        a, b = int(t.loc[row, "class_a"].iloc[0]), int(t.loc[row, "class_b"].iloc[0])
        t.loc[row, "background"] = ["studio", "sky", "sunset"][3 - a - b]
    edit_scenes(data, change)
    failed = failures_of(data)
    assert failed["conflict rows: each cue says its own class, they differ, and every other cue is held as `cues` records"] == [
        "conflict-shape_vs_color-0003"]


def test_cli_exits_non_zero_and_lists_the_failures(data, tmp_path):
    path, offset = shard_of(data, "train-000001")
    images = np.load(path)
    images[offset] = 0
    np.save(path, images)
    cmd = [str(BIN / "cuelab"), "validate", "--params", str(data["params"]), "--scenes",
           str(data["scenes"]), "--images", str(data["images"]), "--docs", str(data["docs"]),
           "--summary", str(data["summary"])]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 1
    assert "no blank images" in done.stderr and "train-000001" in done.stderr


def test_broken_background_protocol_and_a_value_outside_the_registry(data):
    def change(t):
        t.drop(t.index[t.image_id == "protocol-0001-mixed_rand"], inplace=True)
        t.loc[t.image_id == "protocol-0002-mixed_same", "size"] = 1.13
        t.loc[t.image_id == "protocol-0003-only_fg", "background"] = "studio"
        t.loc[t.image_id == "test-000002", "texture"] = "plaid"
    edit_scenes(data, change)
    failed = failures_of(data)
    assert failed["every protocol base scene in every variant"] == ["protocol-0001"]
    assert failed["protocol variants change only the background and the foreground (all else "
                  "equal)"] == ["protocol-0002"]
    assert failed["Only-FG shows the object on black"] == ["protocol-0003"]
    assert failed["every factor value inside its registry domain"] == ["texture='plaid'"]


def test_broken_foreground_variants_and_worst_case(data):
    """The protocol's new rows: each variant's foreground, Only-BG / No-FG on the original's
    background, the worst case on every training background."""
    def change(t):
        t.loc[t.image_id == "protocol-0000-only_bg_t", "foreground"] = "black"
        t.loc[t.image_id == "protocol-0001-original", "foreground"] = "removed"
        t.loc[t.image_id == "protocol-0002-no_fg", "background"] = "studio"  # its original: sunset
        t.loc[t.image_id == "protocol-0003-worst_case-01", "background"] = "studio"
        t.drop(t.index[t.image_id == "protocol-0004-worst_case-02"], inplace=True)
        t.loc[t.image_id == "protocol-0004-only_bg_b", "light_azimuth"] = 12.0
    edit_scenes(data, change)
    failed = failures_of(data)
    assert failed["each variant's foreground is as it says: blacked out in Only-BG-B, tiled in "
                  "Only-BG-T, removed in No-FG, else the object"] == ["protocol-0000",
                                                                      "protocol-0001"]
    assert failed["Only-BG-B, Only-BG-T and No-FG keep the original's background"] == [
        "protocol-0002"]
    assert failed["the worst case shows the object once on every training background"] == [
        "protocol-0003", "protocol-0004"]
    assert failed["every protocol base scene has one row per variant and per worst-case "
                  "background"] == ["protocol-0004"]
    assert failed["protocol variants change only the background and the foreground (all else "
                  "equal)"] == ["protocol-0004"]
    assert "every protocol base scene in every variant" not in failed


def test_a_picture_without_its_object_may_be_blank(data):
    """No-FG on a plain backdrop is one flat colour: not a blank-image failure; the same picture
    where the object should show is one."""
    t = read_scenes(data["scenes"])
    no_fg = t[(t.variant == "no_fg")].image_id.iloc[0]
    for image_id in (no_fg, "protocol-0001-original"):
        path, offset = shard_of(data, image_id)
        images = np.load(path)
        images[offset] = 77
        np.save(path, images)
    failed = failures_of(data)
    assert [ids for desc, ids in failed.items() if desc.startswith("no blank")] == [
        ["protocol-0001-original"]]


def test_each_probe_kind_has_rows_checks_and_statistics():
    from cuelab.probes import PROBE_KINDS
    from cuelab.sampling import PROBE_ROWS
    from cuelab.scenes import PROBE_GROUPS
    from cuelab.validate import PROBE_TABLES

    assert list(PROBE_ROWS) == list(PROBE_TABLES) == list(PROBE_KINDS) == list(PROBE_GROUPS)
