"""Where in the picture the model looks: gradient saliency and occlusion sensitivity, measured
against the exact object masks.

Both explain the decision the model made (the logit of its chosen class), per pixel:
- saliency: |d logit / d pixel| summed over the colour channels (Simonyan et al. 2014);
- occlusion: how much the logit drops when a square patch over the pixel is painted with the
  images' mean colour (Zeiler & Fergus 2014). The patches tile the image (a last row and column
  flush with the edges; a pixel covered twice gets the mean): half-patch strides would cost four
  times the forward passes, a minute for 64 images on two CPU cores. A rise is no evidence for
  the decision, so it counts 0.
A map's on-object share is its mass inside the mask over its total mass; the mask's own share of
the image is the share an attribution blind to the object would get.
"""

from __future__ import annotations

import numpy as np
import torch

from ..train import model_input


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def saliency(model: torch.nn.Module, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """(n, H, W): |d logit of the chosen class / d pixel|, summed over channels."""
    maps = []
    for start in range(0, len(images), batch_size):
        x = model_input(images[start:start + batch_size], _device(model)).requires_grad_(True)
        logits = model(x)
        # in eval mode the images do not interact, so one backward pass serves the batch
        logits.gather(1, logits.argmax(1, keepdim=True)).sum().backward()
        maps.append(x.grad.abs().sum(1).cpu().numpy())
    return np.concatenate(maps) if maps else np.zeros((0,) + images.shape[1:3])


def patch_corners(size: int, patch: int) -> list[int]:
    """Patch starts along one axis: tiles, the last one flush with the edge."""
    patch = min(patch, size)
    starts = list(range(0, size - patch + 1, patch))
    return starts if starts[-1] == size - patch else starts + [size - patch]


@torch.no_grad()
def occlusion(model: torch.nn.Module, images: np.ndarray, patch: int,
              fill: np.ndarray | None = None, batch_size: int = 64) -> np.ndarray:
    """(n, H, W): the drop of the chosen class's logit when a patch covering the pixel is
    painted with `fill` (RGB in [0, 1]; default: these images' mean colour), averaged over
    those patches, negative drops counted as 0."""
    n, h, w = images.shape[:3]
    if n == 0:
        return np.zeros((0, h, w))
    device = _device(model)
    x = model_input(images, device)
    fill = (x.mean((0, 2, 3)) if fill is None else
            torch.as_tensor(fill, dtype=x.dtype, device=device))[:, None, None]
    logits = model(x)
    chosen = logits.argmax(1)
    base = logits.gather(1, chosen[:, None])[:, 0]
    corners = [(r, c) for r in patch_corners(h, patch) for c in patch_corners(w, patch)]
    ph, pw = min(patch, h), min(patch, w)
    total = torch.zeros(n, h, w, device=device)
    covered = torch.zeros(h, w, device=device)
    per_batch = max(1, batch_size // len(corners))
    for start in range(0, n, per_batch):
        img = x[start:start + per_batch]
        occluded = img[:, None].repeat(1, len(corners), 1, 1, 1)
        for k, (r, c) in enumerate(corners):
            occluded[:, k, :, r:r + ph, c:c + pw] = fill
        occluded = occluded.flatten(0, 1).contiguous(memory_format=torch.channels_last)
        out = model(occluded).view(len(img), len(corners), -1)
        cls = chosen[start:start + per_batch]
        drop = base[start:start + per_batch, None] - out.gather(
            2, cls[:, None, None].expand(-1, len(corners), 1))[..., 0]
        for k, (r, c) in enumerate(corners):
            total[start:start + per_batch, r:r + ph, c:c + pw] += drop[:, k, None, None]
    for r, c in corners:
        covered[r:r + ph, c:c + pw] += 1
    return (total / covered).clamp(min=0).cpu().numpy()


def on_object_share(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """(n,): each map's mass inside its mask over its total mass; NaN where the map is all 0."""
    maps = np.asarray(maps, np.float64)
    inside = (maps * masks).sum((1, 2))
    total = maps.sum((1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, inside / total, np.nan)
