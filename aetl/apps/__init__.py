"""Applications of a trained autoencoder: style transfer (style.py, with its refinement,
refine.py, and artefact measure, checkerboard.py) and latent-space augmentation (augment.py).

Each runs inside `aetl train` (the `app` config group) on the freshly trained model, or on
its own from a finished run (`aetl stylize run=...`, `aetl augment run=...`)."""
