"""aetl: transfer learning with autoencoders, driven by Hydra configs."""

__version__ = "0.1.0"
