"""What every command stands on, apart from the method: the run dir, its checkpoints and
image grids, resuming and signals, the config checks made before Hydra runs and the figure a
sweep optimises, the source-model cache, devices and torchrun, locks, loggers, the sweep
callback, and the run dirs a report reads. Nothing here imports the pipeline (data, domains,
models, strategies, the loop): tests/test_architecture.py checks it."""
