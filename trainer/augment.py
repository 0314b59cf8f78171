"""Batched augmentation and normalisation of cached uint8 pixels (no JPEG decoding per epoch).

Random resized crop + horizontal flip are one affine resampling per photo, done for the whole batch
in a single `grid_sample` call; colour jitter is a per-photo blend. Everything works on (N, 3, H, W)
tensors on the training device; output is normalised float32 in channels_last layout.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .model import MEAN, STD


def to_tensor(pixels: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 (N, H, W, 3) numpy -> uint8 (N, 3, H, W) tensor (a view; no float copy yet)."""
    return torch.from_numpy(np.ascontiguousarray(pixels)).to(device).permute(0, 3, 1, 2)


def normalize(x: torch.Tensor) -> torch.Tensor:
    """uint8 or [0, 255] float (N, 3, H, W) -> (x/255 - MEAN) / STD, float32, channels_last.

    With `sorter.preprocess.preprocess` in front, this is the trainer's eval transform."""
    mean = torch.tensor(MEAN, device=x.device).view(1, 3, 1, 1) * 255.0
    std = torch.tensor(STD, device=x.device).view(1, 3, 1, 1) * 255.0
    x = (x.float() - mean) / std
    return x.contiguous(memory_format=torch.channels_last)


def crop_boxes(n: int, gen: torch.Generator, scale: tuple[float, float], ratio: tuple[float, float]) -> torch.Tensor:
    """Per photo (w, h, cx, cy) of a random box as fractions of the side, area in `scale`, w/h in `ratio`.

    Like torchvision's RandomResizedCrop, but sampled once for a batch and clamped instead of retried."""
    area = torch.empty(n).uniform_(scale[0], scale[1], generator=gen)
    log_r = torch.empty(n).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=gen)
    r = torch.exp(log_r)
    w = torch.sqrt(area * r).clamp(max=1.0)
    h = torch.sqrt(area / r).clamp(max=1.0)
    cx = 0.5 * w + torch.rand(n, generator=gen) * (1.0 - w)
    cy = 0.5 * h + torch.rand(n, generator=gen) * (1.0 - h)
    return torch.stack([w, h, cx, cy], dim=1)


def augment(x: torch.Tensor, out_size: int, gen: torch.Generator, scale=(0.35, 1.0), ratio=(0.75, 4 / 3),
            flip: bool = True, jitter: float = 0.0) -> torch.Tensor:
    """uint8 (N, 3, S, S) -> augmented, normalised float32 (N, 3, out, out), channels_last.

    All random numbers come from `gen` (a CPU generator), so a seeded run is reproducible."""
    n = x.shape[0]
    boxes = crop_boxes(n, gen, scale, ratio)
    sign = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0) if flip else torch.ones(n)
    # affine_grid maps output coords in [-1, 1] to input coords: x_in = a * x_out + t
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = boxes[:, 0] * sign
    theta[:, 1, 1] = boxes[:, 1]
    theta[:, 0, 2] = boxes[:, 2] * 2 - 1
    theta[:, 1, 2] = boxes[:, 3] * 2 - 1
    if jitter > 0:
        factors = 1.0 + (torch.rand(n, 3, generator=gen) * 2 - 1) * jitter  # brightness, contrast, saturation
    theta = theta.to(x.device)
    grid = F.affine_grid(theta, [n, 3, out_size, out_size], align_corners=False)
    img = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    if jitter > 0:
        f = factors.to(x.device).view(n, 3, 1, 1, 1)
        img = img * f[:, 0]
        grey = (0.299 * img[:, 0] + 0.587 * img[:, 1] + 0.114 * img[:, 2]).unsqueeze(1)
        img = grey.mean(dim=(2, 3), keepdim=True) + (img - grey.mean(dim=(2, 3), keepdim=True)) * f[:, 1]
        grey = (0.299 * img[:, 0] + 0.587 * img[:, 1] + 0.114 * img[:, 2]).unsqueeze(1)
        img = grey + (img - grey) * f[:, 2]
        img = img.clamp(0, 255)
    return normalize(img)


def center(x: torch.Tensor, out_size: int) -> torch.Tensor:
    """uint8 (N, 3, S, S) -> the centre out x out crop, normalised (no randomness)."""
    s = x.shape[-1]
    o = (s - out_size) // 2
    return normalize(x[:, :, o:o + out_size, o:o + out_size])
