"""How any model trains: the one training loop (loop.py), the loss terms a phase may add
(losses.py), and what a run shares while it trains (context.py)."""
