"""Training: the models, the batch augmentations, and the step on a real tiny dataset: it learns,
it is tracked in a real MLflow server (read back by a separate client), it is deterministic on
the CPU, and a killed run resumed from its checkpoint ends with the same weights."""

import json
import math
import os
import shutil
import signal
import subprocess
import time
import typing
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from mlflow import MlflowClient

from conftest import BIN, ROOT
from cuelab.config import Augment, TrainSettings, experiment_from_dict
from cuelab.data import load_split
from cuelab.errors import CuelabError
from cuelab.tracking import dataset_version, read_run_link
from cuelab.train import ARCHITECTURES, build_model, load_model, load_models, predict, train
from cuelab.train.batches import (InMemorySplit, adjust_colors, color_jitter, gather,
                                  hue_rotation, random_views, reflect, remove_objects)
from cuelab.train.loop import learning_rate, pick_device

# Small and quick, and enough to learn 30 images.
TRAIN = {"model": "simple_cnn", "width": 16, "epochs": 30, "batch_size": 8, "lr": 0.01,
         "augment": {"crop": False}, "patience": 100, "replicates": 2}


def experiment(tiny_dataset, **train_settings):
    exp = yaml.safe_load(tiny_dataset["params"].read_text())
    exp["train"] = TRAIN | train_settings
    return experiment_from_dict(exp)


def weights(folder) -> dict[str, torch.Tensor]:
    return torch.load(folder / "model.pt", weights_only=True)


def same_weights(a, b) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def assert_same_models(a, b, replicates=TRAIN["replicates"]):
    for r in range(replicates):
        assert same_weights(a / f"replicate-{r}", b / f"replicate-{r}"), r


# --- models -------------------------------------------------------------------------------------

def test_the_registry_and_the_schema_list_the_same_architectures():
    assert set(typing.get_args(TrainSettings.model_fields["model"].annotation)) == \
        set(ARCHITECTURES)


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
@pytest.mark.parametrize("size", [32, 64, 128])
def test_every_architecture_maps_pixels_to_logits(architecture, size):
    torch.manual_seed(0)
    model = build_model(architecture, 5, 8, size).eval()
    x = torch.rand(3, 3, size, size)
    logits = model(x)
    assert logits.shape == (3, 5) and logits.dtype == torch.float32
    x.requires_grad_(True)  # evaluation's saliency: a gradient with respect to the pixels
    model(x)[:, 1].sum().backward()
    assert x.grad.shape == x.shape and x.grad.abs().sum() > 0


def test_resnet18_has_resnet18s_layout_and_a_small_image_stem():
    model = build_model("resnet18", 10, 64, 32)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len([c for c in convs if c.kernel_size == (3, 3)]) == 17  # stem + 16 in the blocks
    assert convs[0].stride == (1, 1)  # CIFAR stem below 128 px
    assert build_model("resnet18", 10, 64, 224).stem[1].kernel_size == (7, 7)
    # 11.2 M parameters with a 10-class head, as torchvision's resnet18 with 64 channels
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(11.17e6, rel=0.01)


def test_an_unknown_architecture_is_named():
    with pytest.raises(CuelabError, match="train.model: got 'vgg'; one of simple_cnn"):
        build_model("vgg", 3, 8, 32)


# --- batches and augmentation ------------------------------------------------------------------

def scrambled(n, size=16):
    """uint8 images (one channel repeated) whose 256 pixels are all different, each image in
    its own order: to see exactly where pixels went."""
    g = torch.Generator().manual_seed(0)
    pixels = torch.stack([torch.randperm(size * size, generator=g) for _ in range(n)])
    return pixels.reshape(n, 1, size, size).expand(n, 3, size, size).to(torch.uint8)


def test_views_shift_each_image_by_at_most_an_eighth_and_mirror_half():
    n, size = 64, 16
    x = scrambled(n, size).contiguous()
    g = torch.Generator().manual_seed(0)
    rows, cols = random_views(n, size, Augment(flip=True, crop=True), g, torch.device("cpu"))
    out = gather(x, torch.arange(n), rows, cols)
    shifts, mirrored = set(), 0
    for o, i in zip(out, x):
        # the centre 12x12 of the input appears within 2 pixels of its place, maybe mirrored
        found = [(dy, dx, m) for dy in range(-2, 3) for dx in range(-2, 3) for m in (0, 1)
                 if torch.equal(o[:, 2 + dy:14 + dy, 2 + dx:14 + dx],
                                (i.flip(-1) if m else i)[:, 2:14, 2:14])]
        assert len(found) == 1
        shifts.add(found[0][:2])
        mirrored += found[0][2]
    assert len(shifts) > 10 and 16 < mirrored < 48
    # beyond the border the image is reflected, as 'reflect' padding does
    assert reflect(torch.tensor([-2, -1, 0, 15, 16, 17]), 16).tolist() == [2, 1, 0, 15, 14, 13]
    # no augmentation: the images as they are
    rows, cols = random_views(n, size, Augment(flip=False, crop=False), g, torch.device("cpu"))
    assert torch.equal(gather(x, torch.arange(n).flip(0), rows, cols), x.flip(0))


def test_hue_rotation_keeps_greys_and_turns_red_into_green():
    rot = hue_rotation(torch.tensor([2 * math.pi / 3, 0.7]))
    assert torch.allclose(rot[0] @ torch.tensor([1.0, 0, 0]), torch.tensor([0.0, 1, 0]),
                          atol=1e-6)
    grey = torch.tensor([0.4, 0.4, 0.4])
    assert torch.allclose(rot[1] @ grey, grey, atol=1e-6)


def test_colour_adjustments_are_torchvisions_one_after_the_other():
    x = torch.rand(8, 3, 6, 6) * 0.5 + 0.2  # no clipping along the way
    b, c, s = (torch.rand(3, 8) * 0.4 + 0.8)
    hue = torch.rand(8) - 0.5
    luma = torch.tensor([0.299, 0.587, 0.114])[None, :, None, None]
    step = x * b[:, None, None, None]
    mean = (step * luma).sum(1, keepdim=True).mean((2, 3), keepdim=True)
    step = (step - mean) * c[:, None, None, None] + mean
    grey = (step * luma).sum(1, keepdim=True)
    step = grey + (step - grey) * s[:, None, None, None]
    step = torch.einsum("nij,njhw->nihw", hue_rotation(hue), step)
    assert torch.allclose(adjust_colors(x, b, c, s, hue), step.clamp(0, 1), atol=1e-5)
    g = torch.Generator().manual_seed(0)
    jittered = color_jitter(x, 0.5, g)
    assert jittered.min() >= 0 and jittered.max() <= 1 and not torch.allclose(jittered, x)
    assert torch.allclose(color_jitter(x, 0.0, g), x, atol=1e-6)


def test_random_backgrounds_keep_every_object_pixel_and_show_no_second_object():
    n, size = 64, 16
    images = torch.randint(0, 250, (n, 3, size, size), dtype=torch.uint8)
    masks = torch.zeros(n, 1, size, size, dtype=torch.bool)
    masks[:, :, 5:11, 5:11] = True  # the object in the centre
    images[:, :, 5:11, 5:11] = 255  # object pixels are marked: no other pixel is 255
    split = InMemorySplit(images, masks, torch.zeros(n, dtype=torch.int64))
    x = images.float() / 255
    background = ~masks.expand_as(x)
    for probability, fewest, most in ((0.5, 16, 48), (1.0, 62, 64), (0.0, 0, 0)):
        out = split.paste_on_random_backgrounds(x, masks, torch.Generator().manual_seed(1),
                                                probability)
        assert torch.equal(out[masks.expand_as(out)], x[masks.expand_as(x)])
        assert not (out[background] == 1.0).any()  # no pixel of another object
        swapped = [not torch.equal(o[b], i[b]) for o, i, b in zip(out, x, background)]
        assert fewest <= sum(swapped) <= most  # about that share (a donor can be itself)
    cleaned = remove_objects(x, masks)
    assert (cleaned < 1).all()
    beyond_the_edge = torch.ones_like(out, dtype=torch.bool)
    beyond_the_edge[:, :, 4:12, 4:12] = False  # the object and its one-pixel soft edge
    assert torch.equal(cleaned[beyond_the_edge], x[beyond_the_edge])


def test_in_memory_batches_cover_the_split_and_are_reproducible(tiny_dataset):
    split = InMemorySplit.load(tiny_dataset["images"], "train", torch.device("cpu"))
    data = load_split(tiny_dataset["images"], "train")
    assert split.images.dtype == torch.uint8 and len(split) == len(data.labels) == 30
    evaluation = list(split.batches(8))
    assert sum(len(y) for _, y in evaluation) == 30 and evaluation[0][0].max() <= 1
    assert np.array_equal(torch.cat([y for _, y in evaluation]).numpy(), data.labels)
    assert np.array_equal((evaluation[0][0][0] * 255).round().byte().permute(1, 2, 0).numpy(),
                          data.images[0])

    def epoch(seed):
        g = torch.Generator().manual_seed(seed)
        return list(split.batches(8, g, Augment(color_jitter=0.3), swap_background=1.0))

    a, b = epoch(5), epoch(5)
    assert [len(y) for _, y in a] == [8, 8, 7, 7]  # every image, no runt batch for BatchNorm
    assert sorted(torch.cat([y for _, y in a]).tolist()) == sorted(data.labels.tolist())
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))
    assert not torch.equal(a[0][0], epoch(6)[0][0])


def test_schedules():
    cfg = TrainSettings(lr=0.1, schedule="cosine")
    assert learning_rate(cfg, 0, 100) == 0.1 and learning_rate(cfg, 50, 100) == \
        pytest.approx(0.05) and learning_rate(cfg, 100, 100) == pytest.approx(0)
    cfg = TrainSettings(lr=0.1, schedule="step")
    assert [learning_rate(cfg, s, 100) for s in (49, 50, 75)] == pytest.approx([0.1, 0.01, 0.001])
    assert learning_rate(TrainSettings(lr=0.1, schedule="constant"), 99, 100) == 0.1


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_asking_for_a_gpu_without_one_is_refused():
    with pytest.raises(CuelabError, match="train.device: got 'gpu'"):
        pick_device(TrainSettings(device="gpu"))


def test_load_model_and_predict_refuse_bad_input(tmp_path):
    with pytest.raises(CuelabError, match="model.json is missing"):
        load_model(tmp_path)
    model = build_model("simple_cnn", 3, 4, 32)
    with pytest.raises(CuelabError, match=r"uint8 \(n, height, width, 3\)"):
        predict(model, np.zeros((2, 3, 32, 32), np.uint8))
    assert predict(model, np.zeros((0, 32, 32, 3), np.uint8)).shape == (0, 3)


# --- the step -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tiny_dataset, mlflow_server, tmp_path_factory):
    """One training run on the tiny dataset, tracked by the real MLflow server."""
    out = tmp_path_factory.mktemp("trained")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", mlflow_server)
        summary = train(experiment(tiny_dataset), tiny_dataset["images"], out / "models",
                        out / "metrics" / "train.json", progress=False)
    return {"summary": summary, "models": out / "models", "metrics": out / "metrics" /
            "train.json", "uri": mlflow_server}


def test_a_tiny_rendered_set_is_learned(trained, tiny_dataset):
    models = load_models(trained["models"])
    assert len(models) == 2
    data = load_split(tiny_dataset["images"], "train")
    accuracies = [(predict(m, data.images).argmax(1) == data.labels).mean() for m, _ in models]
    assert min(accuracies) >= 0.95
    metrics = json.loads(trained["metrics"].read_text())
    assert metrics["train_accuracy"] == pytest.approx(accuracies)
    assert set(metrics) == {"replicates", "select_on", "device", "best_val_accuracy_mean",
                            "train_accuracy_mean", "best_epoch", "best_val_accuracy",
                            "train_accuracy", "epochs"}  # no wall time: versioned by DVC
    assert metrics["epochs"] == [TRAIN["epochs"]] * 2 and metrics["device"] == "cpu"
    assert sorted(p.name for p in trained["models"].iterdir()) == [
        "mlflow-run.json", "models.json", "replicate-0", "replicate-1"]
    assert sorted(p.name for p in (trained["models"] / "replicate-1").iterdir()) == [
        "mlflow-run.json", "model.json", "model.pt"]
    assert "trained 2 simple_cnn replicates on cpu" in str(trained["summary"])
    assert "replicate 1 (seed " in str(trained["summary"])


def test_replicates_share_the_data_and_differ_in_their_seed(trained, tiny_dataset):
    configs = [json.loads((trained["models"] / f"replicate-{r}" / "model.json").read_text())
               for r in range(2)]
    for r, config in enumerate(configs):
        assert config == config | {
            "architecture": "simple_cnn", "width": 16, "input_size": 32, "num_classes": 3,
            "classes": ["cube", "sphere", "cone"], "experiment": "tiny", "data_seed": 3,
            "replicate": r, "dataset_version": dataset_version(tiny_dataset["images"]),
            "registered_model": "cuelab-tiny", "select_on": "val"}
        assert not {"run_id", "experiment_id", "tracking_uri", "model_version"} & set(config)
    assert configs[0]["seed"] != configs[1]["seed"]
    assert not same_weights(trained["models"] / "replicate-0", trained["models"] / "replicate-1")
    # another train.seed: other replicates, the same data
    other = experiment(tiny_dataset, seed=1)
    from cuelab.train.loop import replicate_seed
    assert replicate_seed(other.train, 0) not in {c["seed"] for c in configs}
    parent = read_run_link(trained["models"])
    assert parent["run_id"] == trained["summary"].run_id and parent["tracking_uri"] == \
        trained["uri"]
    assert parent["model_versions"] == [r.model_version for r in trained["summary"].replicates]
    for r, replicate in enumerate(trained["summary"].replicates):
        link = read_run_link(trained["models"] / f"replicate-{r}")
        assert link["run_id"] == replicate.run_id != parent["run_id"]
        assert link["model_version"] == replicate.model_version


def test_a_separate_client_reads_the_runs_and_the_registered_models(trained, tiny_dataset):
    import mlflow.pyfunc

    parent = read_run_link(trained["models"])
    client = MlflowClient(tracking_uri=trained["uri"])
    run = client.get_run(parent["run_id"])
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "tiny"
    # parameters: the whole experiment, flattened, on the training run
    params = run.data.params
    assert params["train.lr"] == "0.01" and params["train.batch_size"] == "8"
    assert params["train.replicates"] == "2"
    assert params["label.levels"] == '["cube", "sphere", "cone"]' and params["seed"] == "3"
    # the dataset version, as a parameter and as the digest of the run's dataset input
    version = dataset_version(tiny_dataset["images"])
    assert params["dataset_version"] == version
    assert run.inputs.dataset_inputs[0].dataset.digest == version
    assert run.data.tags["mlflow.source.git.commit"].startswith(
        subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                       text=True).stdout.strip())
    metrics = json.loads(trained["metrics"].read_text())
    assert run.data.metrics["best_val_accuracy_mean"] == pytest.approx(
        metrics["best_val_accuracy_mean"])
    for r in range(2):
        link = read_run_link(trained["models"] / f"replicate-{r}")
        child = client.get_run(link["run_id"])
        assert child.data.tags["mlflow.parentRunId"] == run.info.run_id
        assert child.data.tags["cuelab.replicate"] == str(r)
        # the curves, one point per epoch, ending where metrics/train.json says
        history = client.get_metric_history(child.info.run_id, "val_accuracy")
        assert [m.step for m in history] == list(range(1, TRAIN["epochs"] + 1))
        assert max(m.value for m in history) == metrics["best_val_accuracy"][r]
        for name in ("train_loss", "train_accuracy", "val_loss", "lr"):
            assert len(client.get_metric_history(child.info.run_id, name)) == TRAIN["epochs"]
        artifacts = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert {"train_samples.png", "model.json"} <= artifacts
        # the registered model: this run's, with a signature, and it predicts what ours does,
        # naming the classes
        version_info = client.get_model_version("cuelab-tiny", link["model_version"])
        assert version_info.run_id == child.info.run_id
        assert version_info.tags["dataset_version"] == version
        assert version_info.tags["replicate"] == str(r) and version_info.tags["git_commit"]
        mlflow.set_tracking_uri(trained["uri"])
        logged = mlflow.pyfunc.load_model(f"models:/cuelab-tiny/{link['model_version']}")
        ours, _ = load_model(trained["models"] / f"replicate-{r}")
        images = load_split(tiny_dataset["images"], "test").images
        table = logged.predict(images.transpose(0, 3, 1, 2).astype(np.float32) / 255)
        assert list(table.columns) == ["class", "cube", "sphere", "cone"]
        logits = predict(ours, images)
        assert np.allclose(table[["cube", "sphere", "cone"]].to_numpy(), logits, atol=1e-5)
        assert list(table["class"]) == [["cube", "sphere", "cone"][i] for i in logits.argmax(1)]
    info = mlflow.models.get_model_info(f"models:/cuelab-tiny/{link['model_version']}")
    assert tuple(info.signature.inputs.to_dict()[0]["tensor-spec"]["shape"]) == (-1, 3, 32, 32)
    # names that say what a run is; the model described, its champion aliased
    assert run.info.run_name == "train tiny"
    assert child.info.run_name == f"replicate 1 (simple_cnn, seed {child.data.tags['cuelab.seed']})"
    model = client.get_registered_model("cuelab-tiny")
    assert "classes: cube, sphere, cone" in model.description and "@champion" in model.description
    best = max(range(2), key=lambda r: (metrics["best_val_accuracy"][r], -r))
    champion = read_run_link(trained["models"] / f"replicate-{best}")["model_version"]
    assert model.aliases["champion"] == champion == read_run_link(trained["models"])["champion"]
    assert mlflow.pyfunc.load_model("models:/cuelab-tiny@champion").metadata.model_uuid
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert "cuelab" in experiment.tags["mlflow.note.content"]


@pytest.mark.slow
def test_training_is_deterministic_on_the_cpu(trained, tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained["uri"])
    train(experiment(tiny_dataset), tiny_dataset["images"], tmp_path / "models",
          tmp_path / "train.json", progress=False)
    assert_same_models(tmp_path / "models", trained["models"])
    assert torch.are_deterministic_algorithms_enabled() is False  # the caller's state is back


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_same_weights_and_the_same_mlflow_run(
        trained, tiny_dataset, tmp_path, monkeypatch):
    exp = experiment(tiny_dataset)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(exp.model_dump(mode="json")))
    models = tmp_path / "models"
    env = {**os.environ, "MLFLOW_TRACKING_URI": trained["uri"]}
    for attempt in range(3):  # kill it as soon as a checkpoint exists (mid-run, almost surely)
        run = subprocess.Popen([BIN / "cuelab", "train", "--params", params, "--images",
                                tiny_dataset["images"], "--models", models, "--metrics",
                                tmp_path / "train.json"], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        # in the second replicate: the first is then finished and kept
        second = models / "replicate-1" / "checkpoint.pt"
        while run.poll() is None and not second.exists():
            time.sleep(0.01)
        os.kill(run.pid, signal.SIGKILL)
        run.wait()
        if second.exists():
            break
    checkpoint = torch.load(second, weights_only=True)
    done = checkpoint["state"]["epoch"]
    assert 1 <= done < TRAIN["epochs"]
    assert (models / "replicate-0" / "model.pt").exists()
    assert not (models / "replicate-1" / "model.pt").exists()
    assert not (models / "models.json").exists()  # not a complete models directory yet
    with pytest.raises(CuelabError, match="models.json is missing: training did not finish"):
        load_models(models)
    first_run = read_run_link(models / "replicate-0")["run_id"]

    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained["uri"])
    changed = experiment(tiny_dataset, lr=0.02)
    with pytest.raises(CuelabError, match=r"train.lr: 0.01 -> 0.02.*without --resume"):
        train(changed, tiny_dataset["images"], models, tmp_path / "train.json", resume=True,
              progress=False)

    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained["uri"])
    summary = train(exp, tiny_dataset["images"], models, tmp_path / "train.json", resume=True,
                    progress=False)
    kept, resumed = summary.replicates
    assert resumed.resumed_after == done and f"resumed after epoch {done}" in str(summary)
    assert kept.run_id == first_run  # finished before the kill: kept, not trained again
    assert_same_models(models, trained["models"])
    assert not (models / "replicate-1" / "checkpoint.pt").exists()
    # one MLflow run from start to end: the killed one, continued
    client = MlflowClient(tracking_uri=trained["uri"])
    assert resumed.run_id == checkpoint["state"]["run_id"]
    assert client.get_run(resumed.run_id).info.status == "FINISHED"
    steps = {m.step for m in client.get_metric_history(resumed.run_id, "val_accuracy")}
    assert steps == set(range(1, TRAIN["epochs"] + 1))


def test_the_model_cache_trains_only_the_replicates_it_lacks(trained, tiny_dataset, tmp_path,
                                                            monkeypatch):
    from cuelab.train.cache import ModelCache
    from cuelab.train.loop import arithmetic_of, fingerprint

    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained["uri"])
    cache = tmp_path / "cache"
    one = train(experiment(tiny_dataset, replicates=1), tiny_dataset["images"], tmp_path / "a",
                tmp_path / "a.json", progress=False, cache=cache)
    assert len(ModelCache(cache)) == 1 and one.replicates[0].reused_from is None
    assert (cache / ".gitignore").read_text().endswith("*\n")
    # one more replicate: the first taken, not trained; the second trained and kept
    two = train(experiment(tiny_dataset), tiny_dataset["images"], tmp_path / "b",
                tmp_path / "b.json", progress=False, cache=cache)
    taken, new = two.replicates
    assert taken.reused_from == one.replicates[0].run_id and new.reused_from is None
    assert len(ModelCache(cache)) == 2
    assert f"trained 1 simple_cnn replicate and took 1 from the model cache ({cache}) on cpu" \
        in str(two) and "taken from the model cache (trained in run" in str(two)
    assert two.seconds == new.seconds
    # the same models, files and metrics as training both here (the module's run, no cache)
    assert_same_models(tmp_path / "b", trained["models"])
    for r in range(2):
        assert (tmp_path / "b" / f"replicate-{r}" / "model.json").read_bytes() == \
            (trained["models"] / f"replicate-{r}" / "model.json").read_bytes()
    assert (tmp_path / "b.json").read_bytes() == trained["metrics"].read_bytes()
    # the taken replicate is a run of its own, its curves as trained, its model registered
    client = MlflowClient(tracking_uri=trained["uri"])
    run = client.get_run(taken.run_id)
    assert taken.run_id != one.replicates[0].run_id
    assert run.data.tags["cuelab.reused_from"] == one.replicates[0].run_id
    assert run.data.tags["mlflow.parentRunId"] == two.run_id
    history = client.get_metric_history(taken.run_id, "val_accuracy")
    assert [m.step for m in history] == list(range(1, TRAIN["epochs"] + 1))
    assert client.get_model_version("cuelab-tiny", taken.model_version).run_id == taken.run_id
    # other settings are another key; a cut-off entry is a miss, trained again and replaced
    exp, version = experiment(tiny_dataset), dataset_version(tiny_dataset["images"])
    here = arithmetic_of(torch.device("cpu"))
    assert json.loads((tmp_path / "b" / "replicate-0" / "model.json").read_text())[
        "arithmetic"] == here == f"cpu, {torch.backends.cpu.get_cpu_capability()}, " \
        f"{torch.get_num_threads()} thread{'s' if torch.get_num_threads() != 1 else ''}"
    key = ModelCache(cache).key(fingerprint(exp, version), 0, here)
    assert key != ModelCache(cache).key(fingerprint(experiment(tiny_dataset, lr=0.02), version),
                                        0, here)
    assert key != ModelCache(cache).key(fingerprint(exp, version), 1, here)
    entry = ModelCache(cache).path(key)
    entry.write_bytes(entry.read_bytes()[:100])
    again = train(experiment(tiny_dataset, replicates=1), tiny_dataset["images"],
                  tmp_path / "c", tmp_path / "c.json", progress=False, cache=cache)
    assert again.replicates[0].reused_from is None
    assert ModelCache(cache).get(key) is not None
    assert_same_models(tmp_path / "c", trained["models"], replicates=1)
    # off: trained, nothing kept
    off = train(experiment(tiny_dataset, replicates=1), tiny_dataset["images"], tmp_path / "d",
                tmp_path / "d.json", progress=False, cache="off")
    assert off.replicates[0].reused_from is None and "model cache" not in str(off)
    # another arithmetic (another number of threads: other bits) is another key: not taken
    threads = torch.get_num_threads()
    torch.set_num_threads(1 if threads > 1 else 2)
    try:
        other = train(experiment(tiny_dataset, replicates=1), tiny_dataset["images"],
                      tmp_path / "e", tmp_path / "e.json", progress=False, cache=cache)
        there = arithmetic_of(torch.device("cpu"))
    finally:
        torch.set_num_threads(threads)
    assert other.replicates[0].reused_from is None and there != here
    assert json.loads((tmp_path / "e" / "replicate-0" / "model.json").read_text())[
        "arithmetic"] == there
    assert ModelCache(cache).get(ModelCache(cache).key(fingerprint(exp, version), 0, there))


@pytest.mark.parametrize("select_on", ["val", "val_balanced"])
def test_early_stopping_keeps_the_best_epoch(tiny_dataset, tmp_path, monkeypatch, select_on):
    """Validation (on the split `select_on` names) on the training images with contradicting
    labels: the better the network fits the training labels, the worse it does on validation,
    so training stops `patience` epochs after its best (the training images, not the few
    validation ones: on those the accuracy can sit at one value, and a tie counts as the
    longer-trained best)."""
    import pandas as pd

    images = tmp_path / "images"
    shutil.copytree(tiny_dataset["images"], images)
    index = pd.read_parquet(images / "index.parquet")
    train_rows = index[index.split == "train"]
    assert train_rows.shard.nunique() == 1
    shard = train_rows.shard.iloc[0]
    for kind in ("images", "masks"):
        shutil.copy(images / f"{shard}.{kind}.npy", images / f"val-copy.{kind}.npy")
    val = train_rows.assign(split=select_on, image_id="copy-" + train_rows.image_id,
                            label=(train_rows.label + 1) % 3, shard="val-copy")
    pd.concat([index[index.split != select_on], val]).to_parquet(images / "index.parquet")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = yaml.safe_load(tiny_dataset["params"].read_text())
    exp["splits"]["val_balanced"] = 30
    exp["train"] = TRAIN | {"patience": 3, "mitigation": "random_background",
                            "swap_probability": 0.5, "augment": {"color_jitter": 0.3},
                            "replicates": 1, "select_on": select_on}
    # resume without a checkpoint: starts afresh
    summary = train(experiment_from_dict(exp), images, tmp_path / "models",
                    tmp_path / "train.json", resume=True, progress=False)
    (only,) = summary.replicates
    assert only.resumed_after is None
    assert only.epochs < TRAIN["epochs"] and only.epochs - only.best_epoch == 3
    model, config = load_model(tmp_path / "models" / "replicate-0")
    data = load_split(images, select_on)
    kept = (predict(model, data.images).argmax(1) == data.labels).mean()
    assert kept == only.best_val_accuracy > only.val_accuracy
    assert config["best_epoch"] == only.best_epoch and config["select_on"] == select_on
    assert f"the epoch kept by {select_on} accuracy" in str(summary)


@pytest.mark.reliability(6)
def test_a_damaged_checkpoint_is_named_on_resume(tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    folder = tmp_path / "models" / "replicate-0"
    folder.mkdir(parents=True)
    (folder / "checkpoint.pt").write_bytes(b"PK\x03\x04 not a whole checkpoint")
    with pytest.raises(CuelabError, match=r"checkpoint.pt is not a readable checkpoint .*"
                       r"delete it to train that replicate from its start"):
        train(experiment(tiny_dataset), tiny_dataset["images"], tmp_path / "models",
              tmp_path / "train.json", resume=True, progress=False)


def test_an_unreachable_tracking_server_stops_training_before_it_starts(
        tiny_dataset, tmp_path, monkeypatch):
    from conftest import free_port

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(CuelabError, match="unreachable"):
        train(experiment(tiny_dataset), tiny_dataset["images"], tmp_path / "models",
              tmp_path / "train.json", progress=False)
    assert not (tmp_path / "models").exists()


def test_cli_train_reports_bad_settings_by_field(tiny_dataset, tmp_path):
    exp = yaml.safe_load(tiny_dataset["params"].read_text())
    exp["train"] = {"model": "vgg16", "optimizer": "adam"}
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(exp))
    r = subprocess.run([BIN / "cuelab", "train", "--params", params, "--images",
                        tiny_dataset["images"]], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2
    assert "train.model: got 'vgg16'" in r.stderr and "train.optimizer: got 'adam'" in r.stderr


def test_the_background_adversary_keeps_the_object_and_learns_to_raise_the_loss():
    """With the classifier held still, the gradient that flows back through the reversal makes
    the generator's backgrounds more misleading: the classifier's loss on them rises."""
    from cuelab.train.adversary import BackgroundAdversary

    torch.manual_seed(0)
    x = scrambled(32).float() / 255
    masks = torch.zeros(32, 1, 16, 16, dtype=torch.bool)
    masks[:, :, 4:12, 4:12] = True  # an object in the middle of every image
    y = torch.arange(32) % 3
    # a classifier of the mean colour, which the backgrounds mostly make
    classifier = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                     torch.nn.Linear(3, 3))
    torch.nn.init.normal_(classifier[2].weight, std=5.0)
    adversary = BackgroundAdversary(16, torch.device("cpu"))
    out = adversary.paste(x, masks, torch.Generator().manual_seed(0), 1.0)
    assert torch.equal(out[masks.expand_as(out)], x[masks.expand_as(x)])  # the object, exact
    assert not torch.equal(out, x)

    def loss_on_adversarial(seed):
        pasted = adversary.paste(x, masks, torch.Generator().manual_seed(seed), 1.0)
        return F.cross_entropy(classifier(pasted), y)

    before = loss_on_adversarial(99).item()
    for step in range(30):  # the classifier's loss, descended: the generator ascends it
        adversary.zero_grad()
        loss_on_adversarial(step).backward()
        adversary.optimizer.step()
    assert loss_on_adversarial(99).item() > before + 0.1


def test_adversarial_background_training_is_deterministic_and_shows_its_backgrounds(
        tiny_dataset, tmp_path, monkeypatch):
    import sqlite3

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = experiment(tiny_dataset, mitigation="adversarial_background", epochs=4, replicates=1)
    for out in ("a", "b"):
        train(exp, tiny_dataset["images"], tmp_path / out, tmp_path / f"{out}.json",
              progress=False)
    assert_same_models(tmp_path / "a", tmp_path / "b", replicates=1)
    run_id = read_run_link(tmp_path / "a" / "replicate-0")["run_id"]
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        (root,) = db.execute("select artifact_uri from runs where run_uuid = ?",
                             (run_id,)).fetchone()
    assert (Path(root.removeprefix("file://")) / "adversarial_backgrounds.png").is_file()
