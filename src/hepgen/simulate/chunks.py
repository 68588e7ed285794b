"""Parallel, seeded, resumable simulation jobs split into chunk files.

Every simulator of hepgen that takes minutes or more (Pythia 8 jets, events, Geant4 showers,
…) splits its work into *chunks*: each chunk is a task dict with its own seed, output path
and size, run by a picklable worker function that writes the chunk file atomically.  The
chunks live in a folder beside the final output; a ``manifest.json`` there records the job's
settings, so re-running the same command resumes (finished chunks are kept, nothing is
generated twice) and a re-run with other settings is refused.  The caller merges the chunk
files into the output atomically and then removes the folder with :func:`finish_chunks`.

Seeds come from :func:`chunk_seed`, ``SeedSequence(seed, spawn_key=indices)``, so the
output does not depend on the number of workers.

Example:
    >>> chunk_seed(1, 0, 0) == chunk_seed(1, 0, 0) != chunk_seed(1, 0, 1)
    True
    >>> 1 <= chunk_seed(7, 3, 2, maximum=900_000_000) <= 900_000_000
    True
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

__all__ = ["chunk_dir_for", "chunk_seed", "finish_chunks", "run_chunks"]

log = logging.getLogger(__name__)


def chunk_seed(seed: int, *indices: int, maximum: int = 2**31 - 1) -> int:
    """A seed in ``1 … maximum`` for the chunk ``indices`` of job ``seed``.

    Drawn from ``numpy.random.SeedSequence(seed, spawn_key=indices)``: independent streams
    for different chunks, the same for the same chunk on every machine and worker count.
    """
    ss = np.random.SeedSequence(int(seed), spawn_key=tuple(int(i) for i in indices))
    return int(ss.generate_state(1, dtype=np.uint32)[0]) % int(maximum) + 1


def chunk_dir_for(output: str | Path) -> Path:
    """The chunk folder of an output file: ``.<name>.chunks`` beside it."""
    output = Path(output)
    return output.with_name(f".{output.name}.chunks")


def _prepare(chunk_dir: Path, manifest: dict, resume: bool) -> None:
    mpath = chunk_dir / "manifest.json"
    if chunk_dir.exists() and not resume:
        shutil.rmtree(chunk_dir)
    # a JSON round trip so that tuples and lists compare equal to what was stored
    manifest = json.loads(json.dumps(manifest))
    if mpath.exists():
        old = json.loads(mpath.read_text())
        if old != manifest:
            raise ValueError(f"{chunk_dir}: holds chunks of an interrupted run with other settings "
                             f"({old}); expected {manifest}. Delete the folder or pass the same settings")
    chunk_dir.mkdir(parents=True, exist_ok=True)
    mpath.write_text(json.dumps(manifest, indent=1))


def run_chunks(chunk_dir: str | Path, manifest: dict, tasks: Sequence[dict], worker: Callable[[dict], dict],
               is_done: Callable[[dict], bool], workers: int = 1, resume: bool = True, progress: bool = True,
               desc: str = "simulating", unit: str = "event") -> list[dict]:
    """Run the chunks of a job that are not done yet, in ``workers`` processes.

    Arguments:
        chunk_dir: the job's chunk folder (:func:`chunk_dir_for`).
        manifest: JSON-able settings of the job; a folder left by a run with other settings is
            refused with a ``ValueError``.
        tasks: one dict per chunk with at least ``path`` (the chunk file) and ``n`` (its size,
            for the progress bar); passed to ``worker``.
        worker: a module-level (picklable) function that runs one task and writes
            ``task["path"]`` atomically.
        is_done: whether a task's chunk file exists complete (e.g. reads it and checks its size).
        workers: processes (1 = run in this process).
        resume: keep finished chunks of an earlier run with the same manifest; False deletes them.
        progress, desc, unit: the tqdm bar (counts ``n``).

    Returns:
        ``tasks`` (all done).  An interrupted run (Ctrl-C, a killed worker) keeps every chunk
        finished so far; calling again with the same arguments runs only the others.
    """
    chunk_dir = Path(chunk_dir)
    if int(workers) < 1:
        raise ValueError(f"workers: expected an integer >= 1, found {workers}")
    _prepare(chunk_dir, manifest, resume)
    todo = [t for t in tasks if not is_done(t)]
    done = sum(int(t["n"]) for t in tasks) - sum(int(t["n"]) for t in todo)
    if done:
        log.info("resuming: %d of %d chunks already done in %s", len(tasks) - len(todo), len(tasks), chunk_dir)
    bar = tqdm(total=sum(int(t["n"]) for t in tasks), initial=done, unit=unit, disable=not progress, desc=desc)
    try:
        if int(workers) == 1 or len(todo) <= 1:
            for task in todo:
                worker(task)
                bar.update(int(task["n"]))
        else:
            ctx = multiprocessing.get_context("spawn")  # no fork of a threaded parent
            with ProcessPoolExecutor(max_workers=min(int(workers), len(todo)), mp_context=ctx) as pool:
                pending = {pool.submit(worker, t): t for t in todo}
                try:
                    waiting = set(pending)
                    while waiting:
                        finished, waiting = wait(waiting, return_when=FIRST_COMPLETED)
                        for fut in finished:
                            fut.result()
                            bar.update(int(pending[fut]["n"]))
                except BrokenProcessPool as err:
                    raise RuntimeError(
                        "a simulation worker process died; the 'spawn' start method re-imports the main "
                        "module, so call this from a file under `if __name__ == '__main__':` (not from "
                        f"stdin), or use workers=1. Finished chunks are kept in {chunk_dir} and a re-run "
                        "resumes from them") from err
                except BaseException:
                    pool.shutdown(wait=True, cancel_futures=True)  # running chunks finish and are kept
                    raise
    finally:
        bar.close()
    return list(tasks)


def finish_chunks(chunk_dir: str | Path) -> None:
    """Remove a job's chunk folder once its output has been written."""
    shutil.rmtree(chunk_dir, ignore_errors=True)
