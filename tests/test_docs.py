"""The docs hold no path of the machine that made them: a figure's command names the script
and its arguments, not where one engineer's files were."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MACHINE = re.compile(r"(?<![\w.~])/(?:tmp|work|root|home|Users|private/var|var/folders)/")


def machine_paths(files: list[Path], root: Path = ROOT) -> list[str]:
    return [f"{p.relative_to(root)}:{n}: {line.strip()[:80]}" for p in files
            for n, line in enumerate(p.read_text(errors="replace").splitlines(), 1) if MACHINE.search(line)]


def test_docs_name_no_path_of_the_machine_that_made_them():
    files = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")), *sorted((ROOT / "docs").rglob("*.csv"))]
    assert len(files) > 5
    assert machine_paths(files) == []


def test_the_check_sees_such_a_path(tmp_path):
    (tmp_path / "a.md").write_text("ran `AETL_CACHE_DIR=/tmp/cache2 python scripts/bench.py`\n~/data/x and a/tmp/b\n"
                                   "see /home/me/runs\n")
    assert [hit.split(":")[1] for hit in machine_paths([tmp_path / "a.md"], tmp_path)] == ["1", "3"]
