"""Training: the CNNs (`models`), in-memory augmented batches (`batches`) and the step (`loop`);
and the two functions the later steps use, `load_model` and `predict`.

    models/models.json  the replicates' folders (written last: the directory is complete),
                        experiment, classes
    models/replicate-<r>/model.pt     the state_dict (torch.load(..., weights_only=True): no
                        pickled code)
    models/replicate-<r>/model.json   architecture, width, input_size, num_classes, classes,
                        experiment, data_seed, replicate, seed, dataset_version,
                        registered_model, best_epoch, best_val_accuracy, train_accuracy, epochs,
                        select_on, train (the settings), fingerprint
    models/mlflow-run.json and models/replicate-<r>/mlflow-run.json   where the training run
                        (parent) and each replicate's run were logged: tracking_uri,
                        experiment_id, run_id, registered_model, model_version(s). Not part of
                        the versioned model (DVC ignores them, .dvcignore): they differ from run
                        to run while the models do not, and mean something only beside that
                        MLflow store.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..errors import CuelabError
from .loop import CONFIG, INDEX, WEIGHTS, TrainSummary, train
from .models import ARCHITECTURES, build_model

__all__ = ["ARCHITECTURES", "CONFIG", "TrainSummary", "build_model", "load_model", "load_models",
           "predict", "replicate_folders", "train"]


def load_model(models_dir: str | Path, device: str | torch.device = "cpu"
               ) -> tuple[torch.nn.Module, dict]:
    """The trained network in eval mode on `device`, and its config (models/model.json)."""
    models_dir = Path(models_dir)
    if not (models_dir / CONFIG).is_file():
        raise CuelabError(f"no model in {models_dir} ({CONFIG} is missing): run "
                          "`cuelab train` first")
    config = json.loads((models_dir / CONFIG).read_text())
    model = build_model(config["architecture"], config["num_classes"], config["width"],
                        config["input_size"])
    weights = torch.load(models_dir / WEIGHTS, map_location=device, weights_only=True)
    model.load_state_dict(weights)
    return model.to(device).eval(), config


def replicate_folders(models_dir: str | Path) -> list[Path]:
    """The replicates' folders, as models.json lists them."""
    models_dir = Path(models_dir)
    index = models_dir / INDEX
    if not index.is_file():
        raise CuelabError(f"no trained models in {models_dir} ({INDEX} is missing: training "
                          "did not finish): run `cuelab train` (with --resume to keep the "
                          "replicates already trained)")
    return [models_dir / folder for folder in json.loads(index.read_text())["replicates"]]


def load_models(models_dir: str | Path, device: str | torch.device = "cpu"
                ) -> list[tuple[torch.nn.Module, dict]]:
    """Every replicate of models_dir (models.json lists them), each as `load_model` gives it."""
    return [load_model(folder, device) for folder in replicate_folders(models_dir)]


@torch.no_grad()
def predict(model: torch.nn.Module, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Logits (n, classes) float32 for uint8 images (n, H, W, 3), in batches on the model's
    device."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise CuelabError(f"predict: got images {images.dtype} {images.shape}; uint8 "
                          "(n, height, width, 3)")
    model.eval()
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(images), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(images[i:i + batch_size])).to(device)
        out.append(model(x.permute(0, 3, 1, 2).float() / 255).float().cpu())
    if not out:  # no images: still (0, classes)
        out.append(model(torch.zeros((0, 3) + images.shape[1:3], device=device)).cpu())
    return torch.cat(out).numpy()
