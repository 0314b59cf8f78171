"""sorter: files bird photos by species with an exported ONNX model.

This package never imports torch or trainer: it must run where only onnxruntime is installed.
"""

__version__ = "0.1.0"
