"""The enhancement CNN.

A fully convolutional residual network in the spirit of Rivenson et al. 2018,
sized for a Jetson: it works on a 2x space-to-depth grid (4x fewer positions,
wider layers that suit tensor cores), and adds its learned correction to a
global colour transform (a 1x1 convolution that training starts from the
closed-form colour fit of the pairs; for a started model, the fit of what
its CNN leaves: fit_colour_under). Input and output: RGB in [0, 1], NCHW.

Exact tiling needs the receptive-field radius: `receptive_field()` gives it,
and the tiler uses a halo at least that large.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from models.baseline import fit_colour


class ResBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        return x + self.conv2(self.act(self.conv1(x)))


class EnhanceNet(nn.Module):
    def __init__(self, width: int = 48, blocks: int = 4, down: int = 2):
        super().__init__()
        self.width, self.blocks, self.down = width, blocks, down
        self.colour = nn.Conv2d(3, 3, 1)
        self.unshuffle = nn.PixelUnshuffle(down)
        self.head = nn.Conv2d(3 * down * down, width, 3, padding=1)
        self.body = nn.Sequential(*[ResBlock(width) for _ in range(blocks)])
        self.tail = nn.Conv2d(width, 3 * down * down, 3, padding=1)
        self.shuffle = nn.PixelShuffle(down)
        self.act = nn.ReLU(inplace=True)
        with torch.no_grad():
            self.colour.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            self.colour.bias.zero_()
            # Residual branches start small so the untrained net is the colour transform.
            for b in self.body:
                b.conv2.weight.mul_(0.1)
                b.conv2.bias.zero_()
            self.tail.weight.mul_(0.1)
            self.tail.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.head(self.unshuffle(x - 0.5)))
        y = self.tail(self.body(y))
        return self.colour(x) + self.shuffle(y)

    def set_colour(self, m: np.ndarray) -> None:
        """Sets the colour layer to a 3x4 affine colour map (models.baseline.fit_colour's)."""
        with torch.no_grad():
            self.colour.weight.copy_(torch.from_numpy(np.asarray(m[:, :3], np.float32)).view(3, 3, 1, 1))
            self.colour.bias.copy_(torch.from_numpy(np.asarray(m[:, 3], np.float32)))

    def config(self) -> dict:
        return {"width": self.width, "blocks": self.blocks, "down": self.down}

    def receptive_field(self) -> int:
        """Radius R (input px) such that an output pixel depends only on inputs within R."""
        r_low = 1 + 2 * self.blocks + 1          # head, 2 convs per block, tail (3x3 each)
        return self.down * r_low + self.down - 1  # worst side of a space-to-depth cell

    def flops_per_pixel(self) -> float:
        """Multiply-adds x2 per output pixel (convolutions only)."""
        d2 = self.down * self.down
        low = 2 * 9 * (3 * d2 * self.width * 2 + 2 * self.blocks * self.width * self.width)
        return low / d2 + 2 * 9  # + the 1x1 colour conv (9 MACs)

    @property
    def alignment(self) -> int:
        """Input height and width must be multiples of this."""
        return self.down


def build(config: dict | None = None) -> EnhanceNet:
    return EnhanceNet(**(config or {}))


def fit_colour_under(net: EnhanceNet, inputs: list[np.ndarray], targets: list[np.ndarray], crops: int = 96,
                     size: int = 192, seed: int = 0) -> np.ndarray:
    """The closed-form colour fit of a started model's colour layer with its CNN held as it is: the CNN
    adds its own correction to the colour layer's, so the layer is fitted to what the CNN leaves."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for k in range(crops):
        j = k % len(inputs)
        h, w = targets[j].shape[:2]
        s = min(size, h, w) // 2 * 2
        y0, x0 = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
        xs.append(inputs[j][y0:y0 + s, x0:x0 + s].astype(np.float32) / 255)
        ys.append(targets[j][y0:y0 + s, x0:x0 + s].astype(np.float32) / 255)
    rest = []
    with torch.no_grad():
        for x in xs:
            t = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None]
            rest.append((net(t) - net.colour(t))[0].numpy().transpose(1, 2, 0))
    return fit_colour(xs, [y - r for y, r in zip(ys, rest)])


def cnn_colour_change(net: EnhanceNet, x: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """Mean absolute change net's CNN (not its colour layer) makes to pred = net(x) over 16-px blocks."""
    return torch.nn.functional.avg_pool2d(pred - net.colour(x), 16).abs().mean()
