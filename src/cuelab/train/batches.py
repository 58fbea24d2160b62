"""Training batches straight from memory: a split is a few MB of uint8, so it is loaded once,
moved to the device, and every batch is cut, augmented and converted there with whole-batch
torch ops. No DataLoader, no worker processes: `benchmarks/train_throughput.py` shows that the
model does not wait for its data.

Crops and flips only move pixels, so they are folded into the one gather that picks a batch out
of the uint8 split; random backgrounds come from a background-only copy of the split made once.
All randomness comes from one `torch.Generator` on the CPU (small draws, moved to the device), so
a run draws the same augmentations on every device, and a checkpoint resumes it exactly.
"""

from __future__ import annotations

import math
from functools import cached_property
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F

from ..config import Augment
from ..data import load_split

LUMA = (0.299, 0.587, 0.114)  # Rec. 601: the grey that colour jitter pulls towards or away from


class InMemorySplit:
    """One split on the device: images (n, 3, H, W) uint8, masks (n, 1, H, W) bool, labels."""

    def __init__(self, images: torch.Tensor, masks: torch.Tensor, labels: torch.Tensor):
        self.images, self.masks, self.labels = images, masks, labels
        self.device = images.device

    @classmethod
    def load(cls, root: str | Path, split: str, device: torch.device) -> "InMemorySplit":
        data = load_split(root, split)
        return cls(torch.from_numpy(data.images).permute(0, 3, 1, 2).contiguous().to(device),
                   torch.from_numpy(data.masks).unsqueeze(1).to(device),
                   torch.from_numpy(data.labels.astype("int64")).to(device))

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def size(self) -> int:
        return self.images.shape[-1]

    def steps(self, batch_size: int) -> int:
        """Training batches per epoch: every image once, in batches of about batch_size (all
        within one image of each other, so there is never a last batch of one for BatchNorm)."""
        return max(1, round(len(self) / batch_size))

    def batches(self, batch_size: int, generator: torch.Generator | None = None,
                augment: Augment | None = None, swap_background: float = 0.0,
                adversary=None, adversarial_share: float = 1.0,
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(float32 images in [0, 1], labels) batches. With a generator: one shuffled, augmented
        epoch of `steps(batch_size)` batches, each image's background swapped for another's
        with probability `swap_background`, or for the adversary's (adversary.py) with
        probability `adversarial_share`; without: the split in order, as it is."""
        if generator is None:
            for i in range(0, len(self), batch_size):
                yield self.images[i:i + batch_size].float() / 255, self.labels[i:i + batch_size]
            return
        augment = augment or Augment(flip=False, crop=False)
        order = torch.randperm(len(self), generator=generator).to(self.device)
        for idx in order.tensor_split(self.steps(batch_size)):
            rows, cols = random_views(len(idx), self.size, augment, generator, self.device)
            x = gather(self.images, idx, rows, cols).float() / 255
            if swap_background > 0:
                x = self.paste_on_random_backgrounds(x, gather(self.masks, idx, rows, cols),
                                                     generator, swap_background)
            if adversary is not None:
                x = adversary.paste(x, gather(self.masks, idx, rows, cols), generator,
                                    adversarial_share)
            if augment.color_jitter > 0:
                x = color_jitter(x, augment.color_jitter, generator)
            yield x, self.labels[idx]

    def paste_on_random_backgrounds(self, x: torch.Tensor, masks: torch.Tensor,
                                    g: torch.Generator, probability: float) -> torch.Tensor:
        """The mitigation: background invariance by pasting each object, cut out with its exact
        mask, onto the background of a random training image (Cruz & Cardoso; ImageNet-9's
        Mixed-Rand). With probability 1 (the default of train.swap_probability) it breaks any
        link between background and class; each image that keeps its own background leaves
        part of it."""
        n = len(x)
        donors = torch.randint(len(self), (n,), generator=g).to(self.device)
        swap = (torch.rand(n, generator=g) < probability).to(self.device)
        backgrounds = self.backgrounds[donors].float() / 255
        return torch.where(swap[:, None, None, None] & ~masks, backgrounds, x)

    @cached_property
    def backgrounds(self) -> torch.Tensor:
        """Every image with its object removed (uint8), made once, a chunk at a time."""
        return torch.cat([(remove_objects(self.images[i:i + 1024].float() / 255,
                                          self.masks[i:i + 1024]) * 255).round().to(torch.uint8)
                          for i in range(0, len(self), 1024)])


def random_views(n: int, size: int, augment: Augment, g: torch.Generator,
                 device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """For each of n images, the source row and column of every output pixel: shifted by up to
    size/8 pixels each way, reflecting at the border (crop), and mirrored left to right for
    half of them (flip; never upside down: the floor is below)."""
    rows = cols = torch.arange(size).expand(n, size)
    if augment.crop:
        pad = max(1, size // 8)
        shift = torch.randint(-pad, pad + 1, (2, n, 1), generator=g)
        rows, cols = reflect(rows + shift[0], size), reflect(cols + shift[1], size)
    if augment.flip:
        mirrored = torch.rand(n, 1, generator=g) < 0.5
        cols = torch.where(mirrored, cols.flip(1), cols)
    return rows.to(device), cols.to(device)


def reflect(i: torch.Tensor, size: int) -> torch.Tensor:
    """Indices beyond the border mirrored back in (-1 -> 1, size -> size - 2), as 'reflect'
    padding does."""
    i = i.abs()
    return torch.where(i >= size, 2 * (size - 1) - i, i)


def gather(split: torch.Tensor, idx: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor
           ) -> torch.Tensor:
    """split[idx] (n, C, H, W), each image with its own rows and columns picked."""
    x = split[idx]
    n, c, h, w = x.shape
    x = x.gather(2, rows[:, None, :, None].expand(n, c, h, w))
    return x.gather(3, cols[:, None, None, :].expand(n, c, h, w))


def color_jitter(x: torch.Tensor, strength: float, g: torch.Generator) -> torch.Tensor:
    """Brightness, contrast and saturation each scaled by a random factor in [1 - s, 1 + s],
    the hue turned by up to s * 180 degrees (at s = 1 it carries no information at all)."""
    n = len(x)
    brightness, contrast, saturation = (1 + strength * (2 * torch.rand(3, n, generator=g) - 1)
                                        ).to(x.device)
    hue = (math.pi * strength * (2 * torch.rand(n, generator=g) - 1)).to(x.device)
    return adjust_colors(x, brightness, contrast, saturation, hue)


def adjust_colors(x: torch.Tensor, brightness: torch.Tensor, contrast: torch.Tensor,
                  saturation: torch.Tensor, hue: torch.Tensor) -> torch.Tensor:
    """The four adjustments (per image factors, hue in radians) in that order, as torchvision
    defines them, but as one affine map of RGB per image: each is one, so their product is."""
    luma = torch.tensor(LUMA, device=x.device)
    # saturation: grey + s * (x - grey), grey = luma . x
    saturate = (saturation[:, None, None] * torch.eye(3, device=x.device)
                + (1 - saturation)[:, None, None] * luma.expand(3, 3))
    matrix = (brightness * contrast)[:, None, None] * (hue_rotation(hue) @ saturate)
    # contrast pulls towards the mean grey, a grey offset that saturation and hue keep
    mean = brightness * (x.mean((2, 3)) @ luma)
    offset = ((1 - contrast) * mean)[:, None, None, None]
    return (torch.einsum("nij,njhw->nihw", matrix, x) + offset).clamp(0, 1)


def hue_rotation(angle: torch.Tensor) -> torch.Tensor:
    """(n, 3, 3) rotations of RGB space about the grey axis (Rodrigues' formula): greys stay
    grey, hues turn by `angle`."""
    k = 1 / math.sqrt(3)
    cross = torch.tensor([[0.0, -k, k], [k, 0, -k], [-k, k, 0]], device=angle.device)
    cos, sin = angle.cos()[:, None, None], angle.sin()[:, None, None]
    return (cos * torch.eye(3, device=angle.device) + sin * cross
            + (1 - cos) * torch.full((3, 3), k * k, device=angle.device))


def remove_objects(x: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """The background alone: object pixels filled from the same row half an image away (the
    object is near the centre; backdrops vary mostly from top to bottom), or where that is
    object too, the mean background colour. No second silhouette, so no second label."""
    masks = F.max_pool2d(masks.float(), 3, 1, 1) > 0  # one pixel more: the soft edge
    fill = x.roll(x.shape[-1] // 2, dims=-1)
    covered = masks.roll(x.shape[-1] // 2, dims=-1)
    background = (~masks).float()
    mean = (x * background).sum((2, 3), keepdim=True) / background.sum(
        (2, 3), keepdim=True).clamp(min=1)
    return torch.where(masks, torch.where(covered, mean, fill), x)
