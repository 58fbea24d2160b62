"""Training: the CNNs (`models`), in-memory augmented batches (`batches`) and the step (`loop`);
and the two functions the later steps use, `load_model` and `predict`.

    models/models.json  the replicates' folders (written last: the directory is complete),
                        experiment, classes
    models/replicate-<r>/model.pt     the state_dict (torch.load(..., weights_only=True): no
                        pickled code)
    models/replicate-<r>/model.json   architecture, width, input_size, num_classes, classes,
                        experiment, data_seed, replicate, seed, dataset_version,
                        registered_model, best_epoch, best_val_accuracy, train_accuracy, epochs,
                        select_on, arithmetic (what fixed the bits: on the CPU the instruction
                        set and threads), train (the settings), fingerprint
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
           "model_input", "predict", "read_config", "read_weights", "replicate_folders", "train"]


def load_model(models_dir: str | Path, device: str | torch.device = "cpu"
               ) -> tuple[torch.nn.Module, dict]:
    """The trained network in eval mode on `device`, and its config (models/model.json), both
    checked at the door (`read_config`, `read_weights`)."""
    models_dir = Path(models_dir)
    config = read_config(models_dir)
    model = build_model(config["architecture"], config["num_classes"], config["width"],
                        config["input_size"])
    path = models_dir / WEIGHTS
    weights = read_weights(path, device)
    expected = model.state_dict()
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    resized = [f"{k} {tuple(weights[k].shape)} (not {tuple(v.shape)})"
               for k, v in expected.items() if k in weights and weights[k].shape != v.shape]
    if missing or unexpected or resized:
        found = "; ".join(f"{what} {', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''}"
                          for what, keys in (("missing", missing), ("unexpected", unexpected),
                                             ("resized", resized)) if keys)
        raise CuelabError(
            f"{path}: holds the weights of another network than {models_dir / CONFIG} "
            f"describes ({config['architecture']}, width {config['width']}, "
            f"{config['num_classes']} classes): {found}; {TRAIN_AGAIN}")
    model.load_state_dict(weights)
    # channels-last, as in training: the same arithmetic, and about twice as fast on the CPU
    return model.to(device, memory_format=torch.channels_last).eval(), config


TRAIN_AGAIN = "run `cuelab train` again"
# model.json: what the readers need of it, each with its type (and, for some, its other keys)
CONFIG_NEEDS = {"architecture": str, "width": int, "input_size": int, "num_classes": int,
                "classes": list}
CONFIG_TYPES = CONFIG_NEEDS | {"experiment": str, "dataset_version": str}


def read_config(folder: str | Path) -> dict:
    """A replicate's model.json, checked at the door: there, JSON, an object with the keys the
    readers need, each of its type (architecture one of ARCHITECTURES, sizes whole numbers of
    at least 1, a class name per class); else a `CuelabError` naming the file and the keys."""
    path = Path(folder) / CONFIG
    if not path.is_file():
        raise CuelabError(f"no model in {folder} ({path} is missing): run `cuelab train` first")
    data = _read_json(path, "a model's settings")
    missing = [k for k in CONFIG_NEEDS if k not in data]
    if missing:
        raise CuelabError(f"{path}: not a model's settings: missing {', '.join(missing)}; "
                          f"{TRAIN_AGAIN}")
    wrong = [f"{k} = {data[k]!r} (not {t.__name__})" for k, t in CONFIG_TYPES.items()
             if k in data and (not isinstance(data[k], t) or isinstance(data[k], bool))]
    wrong += [f"{k} = {data[k]!r} (not at least 1)" for k in ("width", "input_size",
                                                               "num_classes")
              if not wrong and data[k] < 1]
    if not wrong and data["architecture"] not in ARCHITECTURES:
        wrong.append(f"architecture = {data['architecture']!r} (not one of "
                     f"{', '.join(ARCHITECTURES)})")
    if not wrong and (len(data["classes"]) != data["num_classes"]
                      or not all(isinstance(c, str) for c in data["classes"])):
        wrong.append(f"classes = {data['classes']!r} (not {data['num_classes']} class names)")
    if wrong:
        raise CuelabError(f"{path}: not a model's settings: {'; '.join(wrong)}; {TRAIN_AGAIN}")
    return data


def read_weights(path: Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """model.pt, checked at the door: there, loadable without running pickled code
    (weights_only), and tensors by parameter name; else a `CuelabError` naming the file and
    what it holds instead."""
    import pickle
    import re

    from ..inputs import holds, said

    if not path.is_file():
        raise CuelabError(f"{path}: missing: the model has no weights; {TRAIN_AGAIN}")
    try:
        weights = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as e:  # the safe loader's reason is deep in its message
        reason = re.search(r"WeightsUnpickler error:\s*([^\n]+?)(?:\. Please|\n|$)", str(e))
        raise CuelabError(f"{path}: not PyTorch weights: it holds {holds(path)} (refused by "
                          "the safe loader"
                          f"{': ' + reason.group(1).strip() if reason else ''}); "
                          f"{TRAIN_AGAIN}") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise CuelabError(f"{path}: not readable PyTorch weights: it holds {holds(path)} "
                          f"({said(e)}); {TRAIN_AGAIN}") from None
    if not isinstance(weights, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in weights.items()):
        what = (f"a dict of {', '.join(map(str, list(weights)[:4]))}"
                f"{', ...' if len(weights) > 4 else ''}" if isinstance(weights, dict)
                else f"a {type(weights).__name__}")
        raise CuelabError(f"{path}: holds {what}, not a network's weights (tensors by "
                          f"parameter name); {TRAIN_AGAIN}")
    return weights


def _read_json(path: Path, what: str) -> dict:
    """A JSON object the training wrote; not JSON, or not an object, named."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:  # ValueError: JSONDecodeError, UnicodeDecodeError
        from ..inputs import holds

        raise CuelabError(f"{path}: not readable JSON: it holds {holds(path)} ({e}); "
                          f"{TRAIN_AGAIN}") from None
    if not isinstance(data, dict):
        raise CuelabError(f"{path}: holds a JSON {type(data).__name__}, not {what} (an "
                          f"object); {TRAIN_AGAIN}")
    return data


def replicate_folders(models_dir: str | Path) -> list[Path]:
    """The replicates' folders, as models.json lists them, checked at the door: models.json
    there, an object whose `replicates` is a list of folder names, each folder there."""
    models_dir = Path(models_dir)
    index = models_dir / INDEX
    if not index.is_file():
        raise CuelabError(f"no trained models in {models_dir} ({index} is missing: training "
                          "did not finish): run `cuelab train` (with --resume to keep the "
                          "replicates already trained)")
    names = _read_json(index, "the trained models' index").get("replicates")
    if not isinstance(names, list) or not names or not all(
            isinstance(n, str) and n and "/" not in n and n not in (".", "..") for n in names):
        raise CuelabError(f"{index}: replicates = {names!r}, not a list of the replicates' "
                          f"folder names; {TRAIN_AGAIN}")
    absent = [n for n in names if not (models_dir / n).is_dir()]
    if absent:
        raise CuelabError(f"{index}: lists {', '.join(absent)}, not in {models_dir} "
                          f"(folder{'s' if len(absent) > 1 else ''} "
                          f"{', '.join(str(models_dir / n) for n in absent)} missing); "
                          f"{TRAIN_AGAIN}")
    return [models_dir / n for n in names]


def load_models(models_dir: str | Path, device: str | torch.device = "cpu"
                ) -> list[tuple[torch.nn.Module, dict]]:
    """Every replicate of models_dir (models.json lists them), each as `load_model` gives it."""
    return [load_model(folder, device) for folder in replicate_folders(models_dir)]


def model_input(images: np.ndarray, device: str | torch.device = "cpu") -> torch.Tensor:
    """uint8 images (n, H, W, 3) -> what the models take: float32 (n, 3, H, W) in [0, 1], laid
    out channels-last as in training, on `device` (moved as uint8: a quarter of the bytes)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    return (x.permute(0, 3, 1, 2).float() / 255).contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def predict(model: torch.nn.Module, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Logits (n, classes) float32 for uint8 images (n, H, W, 3), in batches on the model's
    device."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise CuelabError(f"predict: got images {images.dtype} {images.shape}; uint8 "
                          "(n, height, width, 3)")
    model.eval()
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(images), batch_size):
        out.append(model(model_input(images[i:i + batch_size], device)).float().cpu())
    if not out:  # no images: still (0, classes)
        out.append(model(torch.zeros((0, 3) + images.shape[1:3], device=device)).cpu())
    return torch.cat(out).numpy()
