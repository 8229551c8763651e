"""aetl: transfer learning with autoencoders, driven by Hydra configs.

From Python: `aetl.load_run(path)` (a finished run's model, config and summary, with
encode/decode/reconstruct), `aetl.compose(command, overrides)` and `aetl.run(command, cfg,
out_dir)` (see aetl/api.py). They load on first use, so `import aetl` stays light.
"""

__version__ = "0.1.0"
__all__ = ["__version__", "load_run", "compose", "run"]


def __getattr__(name: str):
    if name in ("load_run", "compose", "run", "Run"):
        from aetl import api

        return getattr(api, name)
    raise AttributeError(f"module 'aetl' has no attribute {name!r}")
