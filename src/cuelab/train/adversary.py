"""train.mitigation: adversarial_background, after Cruz & Cardoso: a small generator draws
backgrounds that *maximise* the classifier's loss, composited behind each object through its exact
mask (the dataset has it: no mask is learned), while the classifier minimises the same loss. The
backgrounds it learns carry whatever the classifier would take for a cue, so leaning on the
background stops paying.

One forward and one backward pass do both: the backgrounds enter the batch through a gradient
reversal (identity forwards, minus the gradient backwards, as in domain-adversarial training), so
the loss's gradient that descends for the classifier ascends for the generator. Its noise comes
from the batch generator, so a run is as deterministic, and resumes as exactly, as without it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

NOISE = 64  # the generator's input: one noise vector per background
LR = 1e-3   # Adam's, for the generator


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -grad


class BackgroundGenerator(nn.Module):
    """Noise (n, NOISE) -> backgrounds (n, 3, size, size) in [0, 1]: a 4 x 4 seed grown by
    upsampling convolutions, then resized to the images' size."""

    def __init__(self, size: int, width: int = 64):
        super().__init__()
        self.size = size
        self.seed = nn.Linear(NOISE, width * 4 * 4)
        blocks, side, channels = [], 4, width
        while side < size:
            out = max(16, channels // 2)
            blocks += [nn.Upsample(scale_factor=2, mode="nearest"),
                       nn.Conv2d(channels, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU()]
            side, channels = side * 2, out
        self.grow = nn.Sequential(*blocks)
        self.paint = nn.Conv2d(channels, 3, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.grow(self.seed(z).view(len(z), -1, 4, 4))
        x = torch.sigmoid(self.paint(x))
        return x if x.shape[-1] == self.size else F.interpolate(
            x, size=(self.size, self.size), mode="bilinear", align_corners=False)


class BackgroundAdversary:
    """The generator and its optimizer, as the training loop uses them."""

    def __init__(self, size: int, device: torch.device):
        self.generator = BackgroundGenerator(size).to(device)
        self.optimizer = torch.optim.Adam(self.generator.parameters(), lr=LR, betas=(0.5, 0.999))

    def paste(self, x: torch.Tensor, masks: torch.Tensor, g: torch.Generator,
              probability: float) -> torch.Tensor:
        """Each object on a generated background, with `probability` (the rest keep theirs)."""
        n = len(x)
        z = torch.randn(n, NOISE, generator=g).to(x.device)
        swap = (torch.rand(n, generator=g) < probability).to(x.device)
        self.generator.train()
        backgrounds = _Reverse.apply(self.generator(z))
        return torch.where(swap[:, None, None, None] & ~masks, backgrounds, x)

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def state_dict(self) -> dict:
        return {"generator": self.generator.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.load_state_dict(state["generator"])
        self.optimizer.load_state_dict(state["optimizer"])

    @torch.no_grad()
    def samples(self, n: int, g: torch.Generator) -> torch.Tensor:
        """n backgrounds as the generator draws them now (for a look, not for training)."""
        self.generator.eval()
        device = next(self.generator.parameters()).device
        return self.generator(torch.randn(n, NOISE, generator=g).to(device))
