"""A torch `Dataset` over one split of the dataset (kept apart so the data steps never import torch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from . import Split, load_split


class SplitDataset(Dataset):
    """Item i is (image CHW uint8, mask HW bool, label). Memory-mapped by default, so DataLoader
    workers share the page cache instead of holding copies."""

    def __init__(self, root: str | Path, split: str, mmap: bool = True):
        self.data: Split = load_split(root, split, mmap=mmap)

    def __len__(self) -> int:
        return len(self.data.labels)

    def __getitem__(self, i: int):
        image = torch.from_numpy(np.array(self.data.images[i])).permute(2, 0, 1)
        return image, torch.from_numpy(np.array(self.data.masks[i])), int(self.data.labels[i])
