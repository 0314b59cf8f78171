"""trainer: fine-tune an ImageNet-style ResNet-18 on a folder of labelled bird photos, then export it."""

__version__ = "0.1.0"
