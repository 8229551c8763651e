"""What a model is worth on the target: reconstruction, probe and head accuracy (metrics.py),
and a source's transferability before any transfer (transferability.py)."""
