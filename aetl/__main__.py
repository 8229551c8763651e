"""`python -m aetl ...`, also what torchrun starts: `torchrun --nproc_per_node=2 -m aetl train`."""
from aetl.commands.cli import main

main()
