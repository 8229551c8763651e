"""One process per run dir (aetl/infra/lock.py), and a read-only or full output location as one
line naming it, for every command."""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import AETL, TINY, TINY_MODEL, aetl, make_job, run_cli

from aetl.commands.report import main as report
from aetl.errors import AetlError, reports_errors, user_error
from aetl.infra import lock
from aetl.infra.cache import SourceCache

HOLD = "import sys, time; from aetl.infra.lock import claim; claim(sys.argv[1]); print('held', flush=True); time.sleep(300)"


def hold(run: Path) -> subprocess.Popen:
    """Another process holding run (it only imports aetl.infra.lock: no torch, quick to start)."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


@pytest.mark.slow
def test_a_run_dir_in_use_is_refused_naming_the_other_process_and_a_killed_one_blocks_nothing(
        tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    holder = hold(run)
    try:
        status, lines = run_cli(tmp_path, monkeypatch, capsys, "train", *TINY, *TINY_MODEL, f"hydra.run.dir={run}")
        assert status == 2 and len(lines) == 1
        assert lines[0].startswith(f"aetl train: {run} is in use by process {holder.pid} on {socket.gethostname()} "
                                   "(since ")
        assert lines[0].endswith("; wait for it to finish, or choose another run dir (hydra.run.dir)")
        assert sorted(p.name for p in run.iterdir()) == [".lock", ".owner"]  # Hydra wrote nothing there
        (run / ".hydra").mkdir()
        report([str(run)])
        assert f"still running (process {holder.pid} on " in capsys.readouterr().out
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert lock.claim(run)  # the lock died with its process
    lock.release(run)


def test_a_process_claims_a_run_dir_once(tmp_path):
    assert lock.claim(tmp_path / "a") and not lock.claim(tmp_path / "a" / ".." / "a")  # one spelling per folder
    with lock.owned(tmp_path / "a"):
        pass
    assert lock.running(tmp_path / "a") is None  # held by this process, which is not "another" one
    lock.release(tmp_path / "a")
    with lock.owned(tmp_path / "b"):
        assert lock.claim(tmp_path / "b") is False
    assert lock.claim(tmp_path / "b")  # owned released it
    lock.release(tmp_path / "b")


def read_only(prefix: str = "", dir: str | None = None) -> tuple[int, str]:  # noqa: A002 - mkstemp's own name
    raise OSError(errno.EROFS, os.strerror(errno.EROFS))


def full(prefix: str = "", dir: str | None = None) -> tuple[int, str]:  # noqa: A002
    """A file that takes no byte: /dev/full answers every write with ENOSPC."""
    path = Path(dir) / f"{prefix}probe"
    path.touch()
    return os.open("/dev/full", os.O_WRONLY), str(path)


@pytest.mark.parametrize("command, args", [("train", []), ("stylize", ["run=/runs/a"]), ("augment", ["run=/runs/a"]),
                                           ("rank", [])])
def test_a_read_only_or_full_output_location_is_one_line_for_every_command(tmp_path, monkeypatch, capsys, command,
                                                                            args):
    monkeypatch.setattr(lock, "mkstemp", read_only)
    status, lines = run_cli(tmp_path, monkeypatch, capsys, command, *args)
    assert status == 2 and lines == [f"aetl {command}: cannot write to {tmp_path} (Read-only file system); choose a "
                                     "writable hydra.run.dir"]
    status, lines = run_cli(tmp_path, monkeypatch, capsys, command, *args, f"hydra.run.dir={tmp_path}/run")
    assert status == 2 and lines == [f"aetl {command}: cannot write to {tmp_path}/run (Read-only file system); "
                                     "choose another run dir (hydra.run.dir)"]
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    monkeypatch.setattr(lock, "mkstemp", full)
    status, lines = run_cli(tmp_path, monkeypatch, capsys, command, "-m", *args, f"hydra.sweep.dir={tmp_path}/sweep")
    assert status == 2 and lines == [f"aetl {command}: cannot write to {tmp_path}/sweep (No space left on device); "
                                     "free some space or choose a writable hydra.sweep.dir"]
    assert list(tmp_path.iterdir()) == []  # the probe left nothing behind


def test_a_run_dir_below_a_file_is_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "a file").write_text("")
    status, lines = run_cli(tmp_path, monkeypatch, capsys, "train", f"hydra.run.dir='{tmp_path}/a file/run'")
    assert status == 2 and lines == [f"aetl train: cannot write to {tmp_path}/a file/run: {tmp_path}/a file is a "
                                     "file; choose another run dir (hydra.run.dir)"]


def test_a_read_only_cache_is_refused_and_a_full_one_is_a_warning(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(lock, "mkstemp", read_only)
    with pytest.raises(AetlError, match=f"^cannot write to {tmp_path}/cache \\(Read-only file system\\); set "
                                        "cache_dir to a writable folder \\(or cache_dir=null: no cache\\)$"):
        SourceCache(tmp_path / "cache")
    monkeypatch.undo()

    def disk_full(path, write):
        raise AetlError(f"could not write {path} (No space left on device); free some space")

    cache = SourceCache(tmp_path / "cache")
    monkeypatch.setattr("aetl.infra.cache.atomic_write", disk_full)
    with caplog.at_level(logging.WARNING):
        assert cache.store("k", {"model": {}}, {}) is None  # the job goes on with its model
    assert caplog.messages == [f"source model not cached: could not write {cache.entry('k').parent / 'spec.json'} "
                               "(No space left on device); free some space"]


def test_a_file_a_job_cannot_write_is_one_line(caplog):
    err = OSError(errno.EROFS, os.strerror(errno.EROFS), "/runs/a/metrics.csv")
    assert str(user_error(err)) == ("cannot use /runs/a/metrics.csv (Read-only file system); choose a writable "
                                    "location (hydra.run.dir, cache_dir, ...) or free some space")

    @reports_errors
    def job():
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), "/runs/a/images")

    with caplog.at_level(logging.ERROR), pytest.raises(SystemExit) as stopped:
        job()
    assert stopped.value.code == 2
    assert caplog.messages == ["cannot use /runs/a/images (Permission denied); fix its permissions or choose another "
                               "location"]


def test_report_out_that_cannot_be_written_is_one_line(tmp_path, monkeypatch, capsys):
    make_job(tmp_path / "sweep", "a", ["strategy=scratch"], {"strategy": "scratch", "seed": 0, "target_mse": 0.1})
    (tmp_path / "file").write_text("")
    assert report([str(tmp_path / "sweep"), "--out", str(tmp_path / "file" / "out")]) == 2
    assert capsys.readouterr().err.splitlines() == [f"aetl report: error: cannot write to {tmp_path}/file/out (Not a "
                                                    "directory); choose a writable --out (nothing of the report was written)"]

    def read_only_dir(self, *args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))

    monkeypatch.setattr(Path, "mkdir", read_only_dir)
    assert report([str(tmp_path / "sweep"), "--out", str(tmp_path / "ro")]) == 2
    assert capsys.readouterr().err.splitlines() == [f"aetl report: error: cannot write to {tmp_path}/ro (Read-only "
                                                    "file system); choose a writable --out (nothing of the report was written)"]


@pytest.mark.slow
def test_two_trains_into_one_run_dir(tmp_path, monkeypatch, capsys):
    """The second is refused while the first runs (held still with SIGSTOP, so the test does not
    race it); the first, killed, resumes; no line of metrics.jsonl is doubled."""

    args = [*TINY, *TINY_MODEL, "cache_dir=null", "trainer.pretrain.steps=200", "trainer.checkpoint_every=50",
            "hydra.run.dir=run"]
    first = subprocess.Popen([AETL, "train", *args], cwd=tmp_path, stderr=subprocess.DEVNULL)
    log = tmp_path / "run" / "run.log"
    try:
        while not (log.is_file() and "pretraining" in log.read_text()):
            assert first.poll() is None, "the first run ended early"
            time.sleep(0.02)
        first.send_signal(signal.SIGSTOP)
        status, lines = run_cli(tmp_path, monkeypatch, capsys, "train", *args)  # the second, in this process
        since = (tmp_path / "run" / ".owner").read_text().split("(since ")[1].strip()
        assert status == 2 and lines == [
            f"aetl train: {tmp_path}/run is in use by process {first.pid} on {socket.gethostname()} (since {since}; "
            "wait for it to finish, or choose another run dir (hydra.run.dir)"]
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    resumed = aetl("train", "resume=run", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [(r["phase"], r["step"]) for r in records]
    assert len(steps) == len(set(steps)) and ("pretrain", 200) in steps
    assert (tmp_path / "run" / "summary.json").is_file()


@pytest.mark.slow
def test_a_finished_or_failed_run_leaves_no_lock_files_and_a_held_dir_is_still_refused(make_cfg, tmp_path):
    from aetl.commands.train import train

    train(make_cfg("cache_dir=null"), tmp_path / "run")
    assert not (tmp_path / "run" / ".lock").exists() and not (tmp_path / "run" / ".owner").exists()
    with pytest.raises(AetlError, match="trainer.transfer.cls_weight > 0 needs a source classifier"):
        train(make_cfg("cache_dir=null", "trainer.pretrain.cls_weight=0", "trainer.transfer.cls_weight=1"),
              tmp_path / "failed")
    assert sorted(p.name for p in (tmp_path / "failed").iterdir() if p.name.startswith(".")) == []
    holder = hold(tmp_path / "failed")  # the files come back while a process holds it, and it is refused
    try:
        assert lock.running(tmp_path / "failed") == (tmp_path / "failed" / ".owner").read_text().strip()
        with pytest.raises(AetlError, match=f"is in use by process {holder.pid} "):
            lock.claim(tmp_path / "failed")
    finally:
        holder.terminate()
        holder.wait()


def test_a_lock_file_its_holder_removed_lets_only_the_next_holder_in(tmp_path):
    """A process that opened .lock just before its holder removed it finds the file it locked
    is no longer the run dir's, and does not count as holding the dir."""
    path = tmp_path / lock.LOCK
    first, second = lock.RunLock(path), lock.RunLock(path)
    assert first.acquire() and not second.acquire()
    late = os.open(path, os.O_RDWR)  # opened before the holder finished
    first.release()
    assert not path.exists()
    assert second.acquire() and path.exists()
    try:
        assert lock._flock(late) and not lock._same_file(late, path)  # it would lock the removed file only
        assert not lock.RunLock(path).acquire()
    finally:
        os.close(late)
        second.release()
    assert not path.exists()


@pytest.mark.slow
def test_a_command_line_claim_is_released_when_the_process_exits(tmp_path):
    """What the command line claims before Hydra runs the job is let go (files removed) at exit."""
    code = f"from aetl.infra.lock import claim; claim({str(tmp_path / 'run')!r})"
    subprocess.run([sys.executable, "-c", code], check=True)
    assert (tmp_path / "run").is_dir() and list((tmp_path / "run").iterdir()) == []
