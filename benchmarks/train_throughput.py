"""Training throughput, and whether data loading ever makes the model wait, measured in one run
on the same batches:

  compute   training steps (forward, backward, optimiser) on one epoch of batches that are
            already on the device, augmented: the model's own speed, the ceiling.
  cuelab    the same epoch with cuelab's loader (`InMemorySplit.batches`: the split in memory
            on the device, each batch shuffled, cut and augmented with whole-batch torch ops)
            feeding the steps, as `cuelab train` runs. Target: epoch time / compute <= 1.1.
  baseline  the textbook way: torch's DataLoader over `SplitDataset` (memory-mapped items,
            collated per batch; 0 and 2 worker processes), then the same augmentation.

Epochs alternate between the ways, and the median is reported, so that other work on the
machine hits all of them alike. Each way is timed with its default augmentation (params.yaml)
and with every option on (flips, crops, colour jitter, random backgrounds).

    .venv/bin/python benchmarks/train_throughput.py [--images data/images] [--epochs 3]
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--params", default=ROOT / "params.yaml", type=Path)
    ap.add_argument("--images", default=ROOT / "data" / "images", type=Path,
                    help="a dataset written by `cuelab sensor` (default: %(default)s)")
    ap.add_argument("--epochs", default=3, type=int, help="timed epochs per way")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader

    from cuelab.config import Augment, load_experiment
    from cuelab.data import read_index
    from cuelab.data.torch_dataset import SplitDataset
    from cuelab.train.batches import InMemorySplit, color_jitter, gather, random_views
    from cuelab.train.loop import make_optimizer
    from cuelab.train.models import build_model

    read_index(args.images)  # a clear error when there is no dataset
    exp = load_experiment(args.params)
    cfg = exp.train
    device = torch.device("cuda" if args.device == "cuda" or args.device == "auto"
                          and torch.cuda.is_available() else "cpu")
    start = time.perf_counter()
    split = InMemorySplit.load(args.images, "train", device)
    load_s = time.perf_counter() - start
    model = build_model(cfg.model, len(exp.classes), cfg.width, split.size)
    model.to(device, memory_format=torch.channels_last).train()
    optimizer = make_optimizer(model, cfg)
    amp = dict(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def run_epoch(batches) -> float:
        sync()
        t = time.perf_counter()
        for x, y in batches:
            with torch.autocast(**amp):
                loss = F.cross_entropy(model(x.contiguous(memory_format=torch.channels_last)), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        sync()
        return time.perf_counter() - t

    def dataloader_batches(workers: int, augment: Augment, mitigation: bool, g):
        loader = DataLoader(SplitDataset(args.images, "train"), batch_size=cfg.batch_size,
                            shuffle=True, num_workers=workers, drop_last=True, generator=g,
                            persistent_workers=False)
        for images, masks, labels in loader:  # then the same augmentations as ours
            images, masks = images.to(device), masks.unsqueeze(1).to(device)
            everyone = torch.arange(len(images), device=device)
            rows, cols = random_views(len(images), split.size, augment, g, device)
            x = gather(images, everyone, rows, cols).float() / 255
            if mitigation:
                x = split.paste_on_random_backgrounds(x, gather(masks, everyone, rows, cols), g)
            if augment.color_jitter > 0:
                x = color_jitter(x, augment.color_jitter, g)
            yield x, labels.to(device)

    n = len(split)
    print(f"{cfg.model} (width {cfg.width}), {n} training images at {split.size}x{split.size}, "
          f"batch {cfg.batch_size}, on {device} ({torch.get_num_threads()} threads); the split "
          f"loads into memory in {load_s:.2f} s")
    print(f"{'augmentation':<30}{'way':<26}{'s/epoch':>9}{'images/s':>10}{'/ compute':>11}"
          "  (time per image)")
    settings = {"params.yaml": (cfg.augment, cfg.mitigation == "random_background"),
                "all on (+jitter, backgrounds)": (Augment(flip=True, crop=True,
                                                         color_jitter=0.5), True)}
    for label, (augment, mitigation) in settings.items():
        g = torch.Generator().manual_seed(0)
        in_memory = list(split.batches(cfg.batch_size, g, augment, mitigation))
        ways = {
            "compute (batches ready)": lambda: in_memory,
            "cuelab loader": lambda: split.batches(cfg.batch_size, g, augment, mitigation),
            "DataLoader, 0 workers": lambda: dataloader_batches(0, augment, mitigation, g),
            "DataLoader, 2 workers": lambda: dataloader_batches(2, augment, mitigation, g),
        }
        run_epoch(ways["cuelab loader"]())  # warm-up: allocator, kernels, page cache
        times = {way: [] for way in ways}
        for _ in range(args.epochs):
            for way, batches in ways.items():
                times[way].append(run_epoch(batches()))
        compute = statistics.median(times["compute (batches ready)"])
        for way, ts in times.items():
            t = statistics.median(ts)
            images = n if way.startswith(("compute", "cuelab")) else (
                n // cfg.batch_size * cfg.batch_size)
            target = "  (target <= 1.1)" if way == "cuelab loader" else ""
            per_image = (t / images) / (compute / n)
            print(f"{label:<30}{way:<26}{t:>9.2f}{images / t:>10.0f}{per_image:>11.3f}"
                  f"{target}")
            label = ""


if __name__ == "__main__":
    main()
