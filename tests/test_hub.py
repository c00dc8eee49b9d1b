"""Every benchmark's hub path fails the same way without a connection: one DataError line, no traceback wall."""

import pytest

from rtransfer import online
from rtransfer.benchmarks.registry import IMPLEMENTED, get_task
from rtransfer.errors import DataError


@pytest.mark.parametrize("benchmark", sorted(IMPLEMENTED))
def test_a_failing_hub_load_is_a_one_line_error(benchmark, monkeypatch):
    import datasets
    import huggingface_hub

    def offline(*args, **kwargs):
        raise ConnectionError("no route to host\nsecond line of a long library message")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)  # LiveCodeBench fetches its files
    # As if connected, so that the libraries are called (tests/test_first_hour.py covers no connection).
    monkeypatch.setattr(online, "hub_offline", lambda: None)
    monkeypatch.setattr(online, "offline_variable", lambda: None)
    task = get_task(benchmark)
    if not task.hf_dataset:  # generated benchmarks (the lab) load no data
        assert task.load(None)
        return
    with pytest.raises(DataError, match=r"could not load .* from the Hugging Face hub") as err:
        task.load(None)
    assert task.hf_dataset in str(err.value) and "\n" not in str(err.value) and "no route to host" in str(err.value)
