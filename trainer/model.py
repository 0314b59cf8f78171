"""The network: torchvision's ResNet-18 with a new classifier head, and how its weights are found.

`--weights imagenet` (torchvision's IMAGENET1K_V1, downloaded once into torch's cache), `none`, or a
PATH to a torchvision-style ResNet-18 state_dict or a trainer checkpoint. The old classifier layer is
always replaced by one with `num_classes` outputs.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.models import ResNet18_Weights, resnet18

from sorter.errors import UserError

# ImageNet statistics: the normalisation that pretrained ResNets expect (applied inside the ONNX graph)
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


class WeightsError(UserError):
    """Pretrained weights could not be found or loaded."""


def _imagenet_state_dict() -> dict[str, torch.Tensor]:
    try:
        return ResNet18_Weights.IMAGENET1K_V1.get_state_dict(progress=True)
    except Exception as e:  # URLError, socket errors, SSL: all mean "offline" for the user
        raise WeightsError(
            "cannot download ImageNet weights (offline?): use --weights none, or --weights PATH to a "
            f"ResNet-18 state_dict or trainer checkpoint ({type(e).__name__})"
        ) from None


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A torchvision ResNet-18 state_dict from a .pt file, or the model weights inside a checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path} (use --weights imagenet, none or a PATH)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        msg = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise WeightsError(f"cannot load weights from {path}: {msg}") from None
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]  # a trainer checkpoint
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path} holds no ResNet-18 state_dict")
    return obj


def build_model(num_classes: int, weights: str = "imagenet") -> nn.Module:
    """ResNet-18 with pretrained weights (all but the classifier) and a fresh `num_classes` head."""
    model = resnet18(weights=None)
    if weights == "none":
        pass
    else:
        state = _imagenet_state_dict() if weights == "imagenet" else load_state_dict_file(weights)
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("fc.")]
        if missing or unexpected:
            what = missing[:2] if missing else unexpected[:2]
            raise WeightsError(
                f"{weights} is not a ResNet-18 state_dict ({len(missing)} missing, {len(unexpected)} unexpected keys, e.g. {what})"
            )
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model
