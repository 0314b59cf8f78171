"""Where and in which precision the network runs: `--device auto|cpu|cuda`, `--precision auto|bf16|fp32`.

bf16 autocast is chosen automatically where the hardware computes it natively (CPUs with AVX-512 BF16 or
AMX, CUDA GPUs that support bf16); elsewhere emulated bf16 is slower than fp32, so fp32 is used.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch

from sorter.errors import UserError


def cpu_has_bf16() -> bool:
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


@dataclass(frozen=True)
class Machine:
    device: torch.device
    bf16: bool

    @property
    def precision(self) -> str:
        return "bf16" if self.bf16 else "fp32"

    def autocast(self):
        """bf16 autocast context (or a no-op in fp32)."""
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)


def pick_machine(device: str = "auto", precision: str = "auto", threads: int = 0) -> Machine:
    """Resolve the user's choices; `threads` (0 = one per core) sets torch's CPU thread count."""
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA GPU is available here (use --device cpu or auto)")
    dev = torch.device("cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu")
    if dev.type == "cpu":
        torch.set_num_threads(threads or os.cpu_count() or 1)
        native = cpu_has_bf16()
    else:
        native = torch.cuda.is_bf16_supported()
    if precision == "bf16":
        bf16 = True
    elif precision == "fp32":
        bf16 = False
    else:
        bf16 = native
    return Machine(dev, bf16)
