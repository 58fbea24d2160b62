"""The train step: the dataset -> a CNN, its curves and samples in MLflow, the model registered.

`train` trains `train.replicates` models on the same data, each with its own seed; the loop of
one fits on one screen (`train_replicate`); what it needs around it (device, schedule,
checkpoints, outputs) sits below. On the CPU the run is deterministic: the same experiment gives the same
weights, bit for bit, and a run resumed from its checkpoint ends exactly where an uninterrupted
one does. On a GPU it runs in mixed precision instead.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import tracking
from ..atomic import replaced_dir, write_json
from ..config import Experiment, TrainSettings, load_experiment
from ..cores import cap_torch_threads
from ..errors import CuelabError
from .adversary import BackgroundAdversary
from .batches import InMemorySplit
from .cache import ModelCache, default_folder
from .models import build_model
from .track import (log_backgrounds, log_epoch, log_model, log_run_inputs, log_sample_grid,
                    mark_champion)

CHECKPOINT = "checkpoint.pt"
WEIGHTS = "model.pt"
CONFIG = "model.json"
INDEX = "models.json"  # the replicates' folders, written last: a complete models directory
RUN = tracking.RUN_FILE  # the MLflow run: apart from the model, DVC ignores it (.dvcignore)


@dataclass
class Replicate:
    """One trained model of the replicates: where it is, how it trained, where it was logged."""
    index: int
    folder: Path
    seed: int
    epochs: int
    val_accuracy: float
    best_val_accuracy: float
    best_epoch: int
    train_accuracy: float
    seconds: float
    run_id: str
    model_version: str
    resumed_after: int | None = None
    reused_from: str | None = None  # the run that trained it, when taken from the model cache


@dataclass
class TrainSummary:
    models: Path
    metrics: Path
    architecture: str
    device: str
    select_on: str
    replicates: list[Replicate]
    train_images: int
    run_id: str              # the parent run; each replicate's run is nested under it
    tracking_uri: str
    registered_model: str
    cache: Path | None = None

    @property
    def seconds(self) -> float:
        """Of training here (a replicate taken from the model cache trained elsewhere)."""
        return sum(r.seconds for r in self.replicates if r.reused_from is None)

    def __str__(self) -> str:
        taken = sum(r.reused_from is not None for r in self.replicates)
        trained = len(self.replicates) - taken
        took = f" and took {taken} from the model cache ({self.cache})" if taken else ""
        lines = [f"trained {trained} {self.architecture} replicate{'s' if trained != 1 else ''}"
                 f"{took} on {self.device} ({self.train_images} images, the epoch kept by "
                 f"{self.select_on} accuracy) in {self.seconds:.1f} s:"]
        for r in self.replicates:
            resumed = f", resumed after epoch {r.resumed_after}" if r.resumed_after else ""
            if r.reused_from:
                resumed = f", taken from the model cache (trained in run {r.reused_from})"
            rate = self.train_images * r.epochs / max(r.seconds, 1e-9)
            lines.append(f"  replicate {r.index} (seed {r.seed}): {r.epochs} epochs, "
                         f"{rate:.0f} images/s{resumed}; {self.select_on} accuracy "
                         f"{r.best_val_accuracy:.3f} at epoch {r.best_epoch} (kept), version "
                         f"{r.model_version}")
        lines.append(f"wrote {self.models}/ (replicate-*/) and {self.metrics}; MLflow run "
                     f"{self.run_id} in {self.tracking_uri} (one nested run per replicate), "
                     f"registered as {self.registered_model}")
        return "\n".join(lines)

    @property
    def model_version(self) -> str:
        return ",".join(r.model_version for r in self.replicates)


def replicate_seed(cfg: TrainSettings, index: int) -> int:
    """Replicate `index`'s initialisation and batch-order seed, from train.seed (the data keeps
    the experiment's seed)."""
    import numpy as np

    return int(np.random.SeedSequence([cfg.seed, index]).generate_state(1, np.uint64)[0]) >> 1


def train(params: str | Path | Experiment, images: str | Path, models_dir: str | Path,
          metrics_path: str | Path, resume: bool = False, progress: bool = True,
          cache: str | Path | None = None) -> TrainSummary:
    """The `train` step: `train.replicates` models on the same data, each in
    models_dir/replicate-<r>. `resume` keeps the replicates already finished and continues the
    others from their checkpoint (written after every epoch); without it, training starts
    afresh. A replicate the shared model cache holds (`cache.py`) is taken from it, not trained;
    `cache`: its folder, or "off"; by default `cache.default_folder`'s."""
    exp = params if isinstance(params, Experiment) else load_experiment(params)
    cfg, models_dir = exp.train, Path(models_dir)
    cap_torch_threads()  # a container's CPU limit, not the node's cores
    device = pick_device(cfg)
    tracking_uri = tracking.connect()  # before anything slow: an unreachable server fails now
    tracking.close_orphans(exp.name)
    data_version = tracking.dataset_version(images)
    train_set, val_set = (InMemorySplit.load(images, s, device) for s in ("train", cfg.select_on))
    previous = tracking.read_run_link(models_dir) if resume else None
    if resume:  # every replicate's checkpoint or model agrees, before anything is trained
        for r in range(cfg.replicates):
            load_checkpoint(models_dir / f"replicate-{r}", exp, data_version)
            finished(models_dir / f"replicate-{r}", exp, data_version)
    elif models_dir.exists():
        shutil.rmtree(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    folder = default_folder(models_dir, cache)
    models = ModelCache(folder) if folder else None
    with tracking.start_run(exp.name, run_id=(previous or {}).get("run_id"),
                            run_name=tracking.run_name("train", exp.name),
                            tags={"cuelab.step": "train"}) as parent:
        if previous is None:
            log_run_inputs(exp, images, data_version, device)
        link = {"tracking_uri": tracking_uri, "experiment_id": parent.info.experiment_id,
                "run_id": parent.info.run_id, "registered_model": f"cuelab-{exp.name}"}
        write_json(models_dir / RUN, link)  # a resumed run reopens this parent
        done = [train_replicate(exp, r, train_set, val_set, models_dir / f"replicate-{r}",
                                data_version, tracking_uri, parent.info.run_id, device, resume,
                                progress, models)
                for r in range(cfg.replicates)]
        for stale in models_dir.glob("replicate-*"):  # from a run with more replicates
            if stale.name not in {r.folder.name for r in done}:
                shutil.rmtree(stale)
        metrics = {"replicates": len(done), "select_on": cfg.select_on, "device": str(device),
                   "best_val_accuracy_mean": sum(r.best_val_accuracy for r in done) / len(done),
                   "train_accuracy_mean": sum(r.train_accuracy for r in done) / len(done),
                   "best_epoch": [r.best_epoch for r in done],
                   "best_val_accuracy": [r.best_val_accuracy for r in done],
                   "train_accuracy": [r.train_accuracy for r in done],
                   "epochs": [r.epochs for r in done]}
        mlflow_metrics = {k: v for k, v in metrics.items() if isinstance(v, float)}
        log_epoch(mlflow_metrics, 0)
        link["model_versions"] = [r.model_version for r in done]
        link["champion"] = mark_champion(link["registered_model"], done)
        write_json(models_dir / RUN, link)
        write_json(models_dir / INDEX, {"replicates": [r.folder.name for r in done],
                                        "experiment": exp.name, "classes": exp.classes})
        write_json(Path(metrics_path), metrics)
    return TrainSummary(models_dir, Path(metrics_path), cfg.model, str(device), cfg.select_on,
                        done, len(train_set), parent.info.run_id, tracking_uri,
                        link["registered_model"], folder)


def train_replicate(exp: Experiment, index: int, train_set: InMemorySplit,
                    val_set: InMemorySplit, folder: Path, data_version: str, tracking_uri: str,
                    parent_run_id: str, device: torch.device, resume: bool,
                    progress: bool, cache: ModelCache | None = None) -> Replicate:
    """One model: the loop on one screen. A finished replicate (its model.json there, the same
    settings and data) is kept when resuming; one the model cache holds is logged, not trained."""
    from tqdm import tqdm

    cfg, seed = exp.train, replicate_seed(exp.train, index)
    if resume and (kept := finished(folder, exp, data_version)) is not None:
        return kept
    key = cache.key(fingerprint(exp, data_version), index, arithmetic_of(device)) \
        if cache is not None else ""
    if cache is not None and (entry := cache.get(key)):
        return reuse(entry, exp, index, seed, train_set, val_set, folder, data_version,
                     tracking_uri, parent_run_id, device)
    ckpt = load_checkpoint(folder, exp, data_version) if resume else None
    cuda = [torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda), deterministic(device.type == "cpu"):
        model, optimizer, scaler, amp, generator, state, best_weights, adversary = \
            start_or_resume(exp, seed, train_set.size, device, ckpt)
        resumed_after = state["epoch"] or None
        with replicate_run(exp, index, seed, parent_run_id, state["run_id"]) as run:
            state["run_id"] = run.info.run_id
            bar = tqdm(total=cfg.epochs, initial=state["epoch"], unit="epoch",
                       desc=f"train r{index}", disable=not progress)
            while state["epoch"] < cfg.epochs and not stop_early(state, cfg):
                start, epoch = time.perf_counter(), state["epoch"]
                metrics = train_epoch(model, train_set, optimizer, scaler, generator, cfg,
                                      epoch, amp, exp.classes, adversary)
                val_loss, val_accuracy = evaluate(model, val_set)
                state["epoch"] = epoch + 1
                state["seconds"] += time.perf_counter() - start
                if val_accuracy >= state["best_accuracy"]:  # a tie: the longer-trained one
                    state["best_accuracy"], state["best_epoch"] = val_accuracy, epoch + 1
                    best_weights = {k: v.detach().cpu().clone()
                                    for k, v in model.state_dict().items()}
                metrics |= {"val_loss": val_loss, "val_accuracy": val_accuracy}
                state["history"].append(metrics)
                log_epoch(metrics, epoch + 1)
                save_checkpoint(folder, exp, data_version, model, optimizer, scaler,
                                generator, device, state, best_weights, adversary)
                bar.set_postfix(loss=f"{metrics['train_loss']:.3f}",
                                val_acc=f"{val_accuracy:.3f}")
                bar.update()
            bar.close()
            if adversary is not None:
                log_backgrounds(adversary)
            if cache is not None:
                cache.put(key, state, best_weights)

            model.load_state_dict(best_weights)  # early stopping keeps the best epoch
            return finish(model, best_weights, state, exp, index, seed, train_set, val_set,
                          tracking_uri, run, data_version, folder, device, resumed_after)


def reuse(entry: dict, exp: Experiment, index: int, seed: int, train_set: InMemorySplit,
          val_set: InMemorySplit, folder: Path, data_version: str, tracking_uri: str,
          parent_run_id: str, device: torch.device) -> Replicate:
    """A replicate from the model cache, untrained: a run of its own with the curves it had when
    it was trained (tagged with that run), registered and written as if trained now."""
    state, best_weights = entry["state"], entry["best_weights"]
    cuda = [torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda), deterministic(device.type == "cpu"), \
            replicate_run(exp, index, seed, parent_run_id, None,
                          {"cuelab.reused_from": state["run_id"]}) as run:
        model = build_model(exp.train.model, len(exp.classes), exp.train.width, train_set.size)
        model.to(device, memory_format=torch.channels_last).load_state_dict(best_weights)
        for epoch, metrics in enumerate(state["history"]):
            log_epoch(metrics, epoch + 1)
        done = finish(model, best_weights, state, exp, index, seed, train_set, val_set,
                      tracking_uri, run, data_version, folder, device, None)
    return replace(done, reused_from=state["run_id"])


def replicate_run(exp: Experiment, index: int, seed: int, parent_run_id: str,
                  run_id: str | None, tags: dict | None = None):
    """The replicate's MLflow run, nested under the train step's (`run_id`: to resume one)."""
    return tracking.start_run(run_id=run_id, parent_run_id=parent_run_id,
                              run_name=f"replicate {index} ({exp.train.model}, seed {seed})",
                              tags={"cuelab.step": "train", "cuelab.replicate": str(index),
                                    "cuelab.seed": str(seed), **(tags or {})})


def start_or_resume(exp: Experiment, seed: int, size: int, device: torch.device,
                    ckpt: dict | None):
    """The model, optimizer, loss scaler, autocast type, batch generator, loop state, best
    weights and background adversary (adversarial_background, else None): new from the
    replicate's seed, or as the checkpoint left them."""
    cfg = exp.train
    torch.manual_seed(seed)
    model = build_model(cfg.model, len(exp.classes), cfg.width, size)
    model.to(device, memory_format=torch.channels_last)
    optimizer = make_optimizer(model, cfg)
    adversary = BackgroundAdversary(size, device) \
        if cfg.mitigation == "adversarial_background" else None
    amp = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() \
        else torch.float16
    scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda"
                                  and amp == torch.float16)
    generator = torch.Generator().manual_seed(seed)
    state = {"epoch": 0, "best_accuracy": -1.0, "best_epoch": 0, "seconds": 0.0,
             "history": [], "run_id": None}
    best_weights = None
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scaler.load_state_dict(ckpt["scaler"])
        set_rng_state(ckpt["rng"], generator, device)
        state, best_weights = ckpt["state"], ckpt["best_weights"]
        if adversary is not None:
            adversary.load_state_dict(ckpt["adversary"])
    return model, optimizer, scaler, amp, generator, state, best_weights, adversary


def train_epoch(model, train_set: InMemorySplit, optimizer, scaler, generator,
                cfg: TrainSettings, epoch: int, amp: torch.dtype, classes: list[str],
                adversary: BackgroundAdversary | None = None) -> dict:
    """One pass over the training split: its mean loss and accuracy, the last learning rate.
    With an adversary, the same loss's gradient also trains it, reversed (adversary.py)."""
    device = next(model.parameters()).device
    steps_per_epoch = train_set.steps(cfg.batch_size)
    model.train()
    loss_sum = correct = seen = 0
    swap = cfg.swap_probability if cfg.mitigation == "random_background" else 0.0
    batches = train_set.batches(cfg.batch_size, generator, cfg.augment, swap,
                                adversary, cfg.swap_probability)
    for step, (x, y) in enumerate(batches):
        if epoch == 0 and step == 0:
            log_sample_grid(x, y, classes)
        lr = learning_rate(cfg, epoch * steps_per_epoch + step, cfg.epochs * steps_per_epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        with torch.autocast(device.type, amp, enabled=device.type == "cuda"):
            logits = model(x.contiguous(memory_format=torch.channels_last))
            loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        if adversary is not None:
            adversary.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        if adversary is not None:
            scaler.step(adversary.optimizer)
        scaler.update()
        loss_sum += loss.detach().float() * len(y)  # no .item(): no sync
        correct += (logits.argmax(1) == y).sum()
        seen += len(y)
    return {"train_loss": loss_sum.item() / seen, "train_accuracy": correct.item() / seen,
            "lr": lr}


def finish(model, best_weights: dict, state: dict, exp: Experiment, index: int, seed: int,
           train_set: InMemorySplit, val_set: InMemorySplit, tracking_uri: str, run,
           data_version: str, folder: Path, device: torch.device,
           resumed_after: int | None) -> Replicate:
    """The kept (best) model: registered in MLflow, written with its config and where it was
    logged."""
    train_accuracy = evaluate(model, train_set)[1]
    config = model_config(exp, index, seed, train_set.size, data_version, state["best_epoch"],
                          state["best_accuracy"], train_accuracy, state["epoch"],
                          arithmetic_of(device))
    version, model_id = log_model(model, val_set, config)
    link = {"tracking_uri": tracking_uri, "experiment_id": run.info.experiment_id,
            "run_id": run.info.run_id, "registered_model": config["registered_model"],
            "model_version": version, "model_id": model_id}
    write_outputs(folder, best_weights, config, link)
    log_epoch({"best_val_accuracy": state["best_accuracy"], "best_epoch": state["best_epoch"],
               "model_train_accuracy": train_accuracy, "wall_seconds": state["seconds"]},
              state["epoch"])
    return Replicate(index, folder, seed, state["epoch"], state["history"][-1]["val_accuracy"],
                     state["best_accuracy"], state["best_epoch"], train_accuracy,
                     state["seconds"], run.info.run_id, version, resumed_after)


def finished(folder: Path, exp: Experiment, data_version: str) -> Replicate | None:
    """A replicate finished earlier (None if not), checked to have these settings and data."""
    config_path, link = folder / CONFIG, tracking.read_run_link(folder)
    if not config_path.is_file() or link is None:
        return None
    config = json.loads(config_path.read_text())
    _same_settings(config_path, config.get("fingerprint", {}), exp, data_version)
    return Replicate(config["replicate"], folder, config["seed"], config["epochs"],
                     config["best_val_accuracy"], config["best_val_accuracy"],
                     config["best_epoch"], config["train_accuracy"], 0.0, link["run_id"],
                     link["model_version"])


# --- around the loop ---------------------------------------------------------------------------

def pick_device(cfg: TrainSettings) -> torch.device:
    cuda = torch.cuda.is_available()
    if cfg.device == "gpu" and not cuda:
        raise CuelabError("train.device: got 'gpu'; no CUDA GPU is visible to torch here: use "
                          "'auto' (GPU when present) or 'cpu'")
    if cfg.device == "cpu" or not cuda:
        return torch.device("cpu")
    torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick its kernels
    return torch.device("cuda")


def arithmetic_of(device: torch.device) -> str:
    """What fixes a model's bits beside the code, the settings and the data. On the CPU: the
    instruction set oneDNN's kernels are chosen for and the threads a convolution's gradient is
    summed across (the same experiment trained with 1 and with 2 threads gives other weights). On
    a GPU, the device type: mixed precision is not bit-exact anyway."""
    if device.type != "cpu":
        return device.type
    threads = torch.get_num_threads()
    return (f"cpu, {torch.backends.cpu.get_cpu_capability()}, {threads} "
            f"thread{'s' if threads != 1 else ''}")


@contextlib.contextmanager
def deterministic(on: bool):
    """Deterministic kernels for the duration (restored after: the caller's process is not
    ours). On the CPU every op we use has one; on CUDA speed wins."""
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(on)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


def make_optimizer(model: torch.nn.Module, cfg: TrainSettings) -> torch.optim.Optimizer:
    """Weight decay on the weights of convolutions and linear layers only, not on biases and
    BatchNorm scales (as nanoGPT does)."""
    params = list(model.parameters())
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, nesterov=True)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def learning_rate(cfg: TrainSettings, step: int, total: int) -> float:
    """The schedule as a function of the step: nothing to save, nothing to restore."""
    progress = step / total
    if cfg.schedule == "cosine":
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * progress))
    if cfg.schedule == "step":  # x0.1 at half and at three quarters of the run
        return cfg.lr * 0.1 ** sum(progress >= m for m in (0.5, 0.75))
    return cfg.lr


def stop_early(state: dict, cfg: TrainSettings) -> bool:
    """`patience` epochs in a row below the best validation accuracy."""
    return state["epoch"] - state["best_epoch"] >= cfg.patience


@torch.no_grad()
def evaluate(model: torch.nn.Module, split: InMemorySplit) -> tuple[float, float]:
    """(mean loss, accuracy) on a whole split, in eval mode."""
    model.eval()
    loss = correct = 0.0
    for x, y in split.batches(256):
        logits = model(x.contiguous(memory_format=torch.channels_last)).float()
        loss += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
    return loss / len(split), correct / len(split)


# --- checkpoints and outputs ----------------------------------------------------------------------

def fingerprint(exp: Experiment, data_version: str) -> dict[str, str]:
    """What a checkpoint (or a finished replicate) must agree on to be resumed (how many
    replicates there are is not part of it: each replicate is on its own)."""
    settings = exp.train.model_dump(mode="json", exclude={"replicates"})
    return tracking.flatten({"seed": exp.seed, "label": exp.label.model_dump(mode="json"),
                             "train": settings, "dataset_version": data_version})


def save_checkpoint(models_dir: Path, exp: Experiment, data_version: str, model, optimizer,
                    scaler, generator: torch.Generator, device: torch.device, state: dict,
                    best_weights: dict, adversary: BackgroundAdversary | None = None) -> None:
    rng = {"torch": torch.get_rng_state(), "generator": generator.get_state()}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(device)
    checkpoint = {"fingerprint": fingerprint(exp, data_version), "state": state,
                  "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                  "scaler": scaler.state_dict(), "rng": rng, "best_weights": best_weights}
    if adversary is not None:
        checkpoint["adversary"] = adversary.state_dict()
    models_dir.mkdir(parents=True, exist_ok=True)
    atomic_save(checkpoint, models_dir / CHECKPOINT)


def load_checkpoint(models_dir: Path, exp: Experiment, data_version: str) -> dict | None:
    path = models_dir / CHECKPOINT
    if not path.is_file():
        return None
    import pickle

    from ..inputs import holds, said

    try:  # written whole or not at all (atomic_save): damaged since, by something else
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        then = checkpoint["fingerprint"]
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, KeyError,
            TypeError) as e:
        raise CuelabError(f"--resume: {path} is not a readable checkpoint (it holds "
                          f"{holds(path)}; {said(e)}): delete it to train that replicate "
                          "from its start, or run without --resume") from None
    _same_settings(path, then, exp, data_version)
    return checkpoint


def _same_settings(path: Path, then: dict, exp: Experiment, data_version: str) -> None:
    now = fingerprint(exp, data_version)
    changed = [f"{k}: {then.get(k)} -> {now.get(k)}" for k in sorted(then | now)
               if then.get(k) != now.get(k)]
    if changed:
        raise CuelabError(f"--resume: {path} was written with other settings or data ("
                          + "; ".join(changed) + "): run without --resume to start afresh")


def set_rng_state(rng: dict, generator: torch.Generator, device: torch.device) -> None:
    torch.set_rng_state(rng["torch"])
    generator.set_state(rng["generator"])
    if "cuda" in rng and device.type == "cuda":
        torch.cuda.set_rng_state(rng["cuda"], device)


def atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(obj, tmp)
    tmp.replace(path)


def model_config(exp: Experiment, index: int, seed: int, input_size: int, data_version: str,
                 best_epoch: int, best_val_accuracy: float, train_accuracy: float,
                 epochs: int, arithmetic: str) -> dict:
    """replicate-<r>/model.json: enough to rebuild the network and say what it was trained on
    (and, `arithmetic`, on what); the same for the same experiment, data and arithmetic (no run
    ids, no paths)."""
    return {"architecture": exp.train.model, "width": exp.train.width,
            "input_size": input_size, "num_classes": len(exp.classes),
            "classes": exp.classes, "experiment": exp.name, "data_seed": exp.seed,
            "replicate": index, "seed": seed, "dataset_version": data_version,
            "registered_model": f"cuelab-{exp.name}", "best_epoch": best_epoch,
            "best_val_accuracy": best_val_accuracy, "train_accuracy": train_accuracy,
            "epochs": epochs, "select_on": exp.train.select_on, "arithmetic": arithmetic,
            "train": exp.train.model_dump(mode="json"),
            "fingerprint": fingerprint(exp, data_version)}


def write_outputs(folder: Path, weights: dict, config: dict, link: dict) -> None:
    """The replicate's folder is built beside the old one and swapped in (taking the checkpoint
    away with the old one)."""
    with replaced_dir(folder) as tmp:
        torch.save(weights, tmp / WEIGHTS)
        (tmp / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
        (tmp / RUN).write_text(json.dumps(link, indent=2) + "\n")
