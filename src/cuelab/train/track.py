"""The MLflow side of training: a run's inputs, its curves and sample pictures, the model logged
and registered, the champion alias. Apart from the loop (`loop`) because none of it changes what
is trained: the model cache's key (`cache.TRAINER_CODE`) hashes the loop's code, not this."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from .. import tracking
from ..config import Experiment
from .batches import InMemorySplit
from .models import build_model

if TYPE_CHECKING:
    from .adversary import BackgroundAdversary
    from .loop import Replicate


def log_run_inputs(exp: Experiment, images: str | Path, data_version: str,
                   device: torch.device) -> None:
    """What makes the run reproducible: every setting, the code's commit, the data's hash."""
    import mlflow
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    mlflow.log_params(tracking.flatten(exp.model_dump(mode="json"))
                      | {"dataset_version": data_version, "device": str(device)})
    mlflow.set_tags({"mlflow.source.git.commit": tracking.git_commit() or "unknown",
                     "cuelab.step": "train", "dataset_version": data_version})
    with warnings.catch_warnings():  # "can be interpreted in multiple ways": all are local
        warnings.simplefilter("ignore", UserWarning)
        source = resolve_dataset_source(str(Path(images).resolve()))
    mlflow.log_input(MetaDataset(source, name=f"{exp.name}/images", digest=data_version),
                     context="training")


def log_epoch(metrics: dict[str, float], epoch: int) -> None:
    import mlflow

    mlflow.log_metrics(metrics, step=epoch)


def log_sample_grid(x: torch.Tensor, y: torch.Tensor, classes: list[str]) -> None:
    """The first training batch as the network sees it (augmented, backgrounds swapped): one
    mosaic, each picture's class under it (one axes: 32 of them took seconds per replicate)."""
    from matplotlib.figure import Figure  # not pyplot: no GUI backend, no global state

    n, cols = min(32, len(x)), 8
    rows = -(-n // cols)
    pixels = x[:n].detach().float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
    h, w = pixels.shape[1:3]
    gap, below = max(1, w // 16), max(1, h // 4)  # between pictures; under each, its class
    mosaic = np.ones((rows * (h + below), cols * (w + gap) - gap, 3), np.float32)
    fig = Figure(figsize=(cols * 1.2, rows * 1.35))
    ax = fig.add_axes((0, 0, 1, 0.93))
    ax.axis("off")
    for i, image in enumerate(pixels):
        top, left = (i // cols) * (h + below), (i % cols) * (w + gap)
        mosaic[top:top + h, left:left + w] = image
        ax.text(left + w / 2, top + h + below / 2, classes[int(y[i])], fontsize=8,
                ha="center", va="center")
    ax.imshow(mosaic, interpolation="nearest")
    fig.suptitle("training samples (augmented)", fontsize=9, y=0.98)
    tracking.log_figure(fig, "train_samples.png")


def log_backgrounds(adversary: BackgroundAdversary) -> None:
    """What the adversary draws at the end of training: the backgrounds it found hardest."""
    from matplotlib.figure import Figure

    pixels = adversary.samples(16, torch.Generator().manual_seed(0)).permute(0, 2, 3, 1)
    fig = Figure(figsize=(8 * 1.2, 2 * 1.2))
    for ax, image in zip(fig.subplots(2, 8).flat, pixels.float().cpu().numpy()):
        ax.axis("off")
        ax.imshow(image, interpolation="nearest")
    fig.suptitle("the adversary's backgrounds after training", fontsize=9)
    fig.tight_layout()
    tracking.log_figure(fig, "adversarial_backgrounds.png")


SERVED = Path(__file__).parents[1] / "served_model.py"  # the model as MLflow serves it, as code


def log_model(model: torch.nn.Module, val_set: InMemorySplit, config: dict
              ) -> tuple[str, str]:
    """Log the model (a torch.export program served by `served_model.py`: loading it runs no pickled
    code; its output names the classes) with its signature and an input example, register it as
    cuelab-<experiment> with its provenance as tags; returns its version and MLflow model id."""
    import tempfile

    import mlflow
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec

    exported = build_model(config["architecture"], config["num_classes"], config["width"],
                           config["input_size"])
    exported.load_state_dict({k: v.cpu() for k, v in model.state_dict().items()})
    exported.eval()
    size, classes = config["input_size"], config["classes"]
    # two images (the first twice if there is one): export keeps the batch size dynamic
    example = (val_set.images[torch.arange(2) % len(val_set.images)].float() / 255).cpu()
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 3, size, size))]),
        outputs=Schema([ColSpec("string", "class")] + [ColSpec("float", c) for c in classes]))
    name = config["registered_model"]
    with tempfile.TemporaryDirectory() as tmp, \
            tracking.mlflow_errors(f"logging and registering the model as {name}"):
        program = torch.export.export(exported, (example,),
                                      dynamic_shapes=({0: torch.export.Dim("batch")},))
        torch.export.save(program, f"{tmp}/model.pt2")
        # its input is checked against the signature; MLflow's advice to add type hints is moot
        warnings.filterwarnings("ignore", message=".*Add type hints to the `predict` method")
        info = mlflow.pyfunc.log_model(
            name="model", python_model=str(SERVED), artifacts={"program": f"{tmp}/model.pt2"},
            model_config={"classes": classes}, signature=signature,
            input_example=example.numpy(), registered_model_name=name,
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "numpy", "pandas"])
        mlflow.log_dict(config, "model.json")
        version = str(info.registered_model_version)
        client = mlflow.MlflowClient()
        client.update_registered_model(name, MODEL_DESCRIPTION.format(
            name=name, experiment=config["experiment"], classes=", ".join(classes)))
        client.set_registered_model_tag(name, "cuelab.experiment", config["experiment"])
        for key, value in {"experiment": config["experiment"],
                           "dataset_version": config["dataset_version"],
                           "git_commit": tracking.git_commit() or "unknown",
                           "replicate": config["replicate"], "seed": config["seed"],
                           "best_val_accuracy": f"{config['best_val_accuracy']:.4f}",
                           "select_on": config["select_on"]}.items():
            client.set_model_version_tag(name, version, key, str(value))
    return version, info.model_id


MODEL_DESCRIPTION = (
    "A cuelab classifier of the experiment '{experiment}' (classes: {classes}). Input: images "
    "(n, 3, H, W), float32 in [0, 1]; output: the predicted class and one logit per class. "
    "Each version is one replicate of a training, tagged with its dataset version, git commit "
    "and seed. Aliases: `models:/{name}@champion` is the best validation accuracy of the "
    "newest training; `models:/{name}/latest` is the newest version.")


def mark_champion(name: str, replicates: list[Replicate]) -> str:
    """Point @champion at the replicate of this training with the best validation accuracy (the
    first of equals); returns its version."""
    import mlflow

    best = max(replicates, key=lambda r: r.best_val_accuracy)
    with tracking.mlflow_errors(f"setting the alias {name}@champion"):
        mlflow.MlflowClient().set_registered_model_alias(name, "champion", best.model_version)
    return best.model_version
