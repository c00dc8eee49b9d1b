"""A training directory's bookkeeping under 8 processes, as 8 ranks of a launched run write it: the main process
alone writes train.json and log.jsonl, and a file every process writes (a run manifest) goes through a temp name
per process, so nothing is lost, half-written or renamed away from another process."""

import json
import multiprocessing
import os
from pathlib import Path

from rtransfer.runs import write_json_atomic
from rtransfer.train.config import load_recipe
from rtransfer.train.outputs import TrainDir

WORLD = 8
ROUNDS = 25


def rank_process(path: str, rank: int, errors) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORLD))
    try:
        target, recipe = TrainDir(Path(path)), load_recipe("sft")
        for round_ in range(ROUNDS):
            assert target.start(recipe, "base", {"hash": "h"}) == 0
            for step in (1, 2, 3):
                target.log(step, {"loss": 1.0})
            target.record(execution={"processes": WORLD}, round=round_)
            assert target.info() is None or target.info()["recipe"]  # a reader never sees a partial file
            write_json_atomic(Path(path) / "manifest.json", {"rank": rank, "round": round_})
            json.loads((Path(path) / "manifest.json").read_text())
    except Exception as err:  # reported to the test: an exception in a child would otherwise only be printed
        errors.put(f"rank {rank}: {type(err).__name__}: {err}")


def test_eight_processes_lose_and_corrupt_nothing(tmp_path):
    context = multiprocessing.get_context("fork")
    errors = context.Queue()
    processes = [context.Process(target=rank_process, args=(str(tmp_path), r, errors)) for r in range(WORLD)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(timeout=120)
    found = [errors.get() for _ in range(errors.qsize())] if not errors.empty() else []
    assert found == [] and all(p.exitcode == 0 for p in processes)
    info = json.loads((tmp_path / "train.json").read_text())
    assert info["round"] == ROUNDS - 1 and info["recipe"]["method"] == "sft" and info["execution"]["processes"] == WORLD
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in log] == [1, 2, 3]  # the main process's lines of its last start, once each
    assert json.loads((tmp_path / "manifest.json").read_text())["round"] in range(ROUNDS)
    assert not list(tmp_path.glob("*.tmp"))
