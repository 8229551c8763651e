"""The commands: one module each (`aetl train`, `rank`, `report`, `stylize`, `augment`) and
the `aetl` dispatcher (cli.py). A command reads its config and runs its pipeline top to
bottom in one short function; the method lives in the packages below it."""
