"""The hf engine's batches at once on a CPU: measured on this machine, cached, and used (engines/calibration.py)."""

import json

import pytest
import torch

from rtransfer.engines import calibration
from rtransfer.engines.base import SamplingParams
from rtransfer.engines.hf import HFEngine

PROMPTS = [[{"role": "user", "content": f"Add {i} and {i * 3}."}] for i in range(6)]


@pytest.fixture(autouse=True)
def _own_calibration(tmp_path, monkeypatch):
    """Not the session's shared calibration (conftest): each test here starts with none."""
    monkeypatch.setenv("RTRANSFER_CACHE", str(tmp_path / "own"))


@pytest.fixture
def engine(tiny_model):
    return HFEngine.load(str(tiny_model), batch_size=2, device="cpu")


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_the_measurement_times_both_choices_and_gives_the_threads_back(engine, two_threads):
    seconds = calibration.measure(engine)
    assert set(seconds) == set(calibration.CHOICES)
    assert all(len(s) == calibration.ROUNDS and min(s) > 0 for s in seconds.values())
    assert torch.get_num_threads() == 2


def test_the_faster_choice_is_kept_and_measured_once_per_key(engine, two_threads, monkeypatch):
    calls = []

    def timed(e):
        calls.append(calibration.calibration_key(e))
        return {1: [0.3, 0.2, 0.4], 2: [0.25, 0.26, 0.1]}  # 2 is faster by the median, not by the minimum

    monkeypatch.setattr(calibration, "measure", timed)
    assert calibration.measured_parallel_batches(engine) == 2
    assert calibration.measured_parallel_batches(engine) == 2 and len(calls) == 1  # from the cache
    cached = json.loads(calibration.cache_file().read_text())
    assert cached[calls[0]]["seconds"]["1"] == [0.3, 0.2, 0.4]
    assert f"{torch.get_num_threads()} threads" in calls[0] and "batch 2" in calls[0]
    monkeypatch.setattr(engine, "batch_size", 5)  # another key: measured again, the first entry kept
    assert calibration.measured_parallel_batches(engine) == 2 and len(calls) == 2
    assert set(json.loads(calibration.cache_file().read_text())) == set(calls)


def test_an_unreadable_cache_is_measured_again(engine, two_threads, monkeypatch):
    monkeypatch.setattr(calibration, "measure", lambda e: {1: [0.1, 0.1, 0.1], 2: [0.2, 0.2, 0.2]})
    calibration.cache_file().write_text("{not json")
    assert calibration.measured_parallel_batches(engine) == 1
    calibration.cache_file().write_text(json.dumps({calibration.calibration_key(engine): {"parallel_batches": 7}}))
    assert calibration.measured_parallel_batches(engine) == 1  # a choice the engine does not make: measured again
    entry = json.loads(calibration.cache_file().read_text())[calibration.calibration_key(engine)]
    assert entry["parallel_batches"] == 1


def test_the_engine_decodes_with_the_measured_choice_and_measures_only_when_it_matters(engine, monkeypatch):
    """Several batches on 2 threads: the choice is measured once and used; one batch, one thread, or a choice
    given: nothing is measured. The answers are the same whichever choice."""
    measured, threads_seen = [], []
    monkeypatch.setattr(calibration, "measure", lambda e: measured.append(1) or {1: [0.2] * 3, 2: [0.1] * 3})
    generate_ids = engine.generate_ids

    def spy(*args, **kwargs):
        threads_seen.append(torch.get_num_threads())
        return generate_ids(*args, **kwargs)

    monkeypatch.setattr(engine, "generate_ids", spy)
    params = SamplingParams(max_new_tokens=5)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        alone = engine.generate(PROMPTS, params, [0] * len(PROMPTS))
        assert measured == [] and set(threads_seen) == {1}
        torch.set_num_threads(2)
        engine.generate(PROMPTS[:2], params, [0, 0])  # one batch of 2
        assert measured == []
        threads_seen.clear()
        both = engine.generate(PROMPTS, params, [0] * len(PROMPTS))
        engine.generate(PROMPTS, params, [0] * len(PROMPTS))
        assert measured == [1] and set(threads_seen) == {1}  # two batches at once, a thread each
        assert [g.text for g in both] == [g.text for g in alone]
        monkeypatch.setattr(engine, "parallel_batches", 1)
        threads_seen.clear()
        engine.generate(PROMPTS, params, [0] * len(PROMPTS))
        assert measured == [1] and set(threads_seen) == {2}
        torch.set_num_threads(3)  # one thread per batch (the study's engines): as many at once as threads, no measuring
        monkeypatch.setattr(engine, "parallel_batches", None)
        monkeypatch.setattr(engine, "one_thread_per_batch", True)
        threads_seen.clear()
        assert [g.text for g in engine.generate(PROMPTS, params, [0] * len(PROMPTS))] == [g.text for g in alone]
        assert measured == [1] and set(threads_seen) == {1}
    finally:
        torch.set_num_threads(before)
