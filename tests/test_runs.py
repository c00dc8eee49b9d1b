"""Run directories: manifest contents, resume checks, fingerprints, the cache root."""

import json

import pytest

from rtransfer.errors import RunMismatchError
from rtransfer.paths import cache_dir, cache_root
from rtransfer.runs import RunDir, fingerprint, new_manifest


def manifest(model, **kw):
    base = dict(
        sampling={"temperature": 0.6, "top_p": 0.95, "max_new_tokens": 512},
        seed=1234,
        chat_template="{{ messages }}",
        engine="hf",
        benchmarks={"math500": {"version": "1", "grader_version": "mv-1"}},
    )
    return new_manifest(str(model), **{**base, **kw})


def test_manifest_records_what_defines_a_run(tmp_path):
    model = tmp_path / "tiny"
    model.mkdir()
    (model / "config.json").write_text("{}")
    run = RunDir(tmp_path / "run")
    stored = run.start(manifest(model))
    on_disk = json.loads((run.path / "manifest.json").read_text())
    assert on_disk == stored
    for key in (
        "model",
        "model_fingerprint",
        "chat_template_hash",
        "sampling",
        "seed",
        "benchmarks",
        "rtransfer_version",
        "created",
        "updated",
    ):
        assert on_disk[key] is not None, key
    assert on_disk["name"] == "tiny"


def test_resume_with_same_settings_keeps_created_and_merges_benchmarks(tmp_path):
    run = RunDir(tmp_path / "run")
    first = run.start(manifest("org/model"))
    again = run.start(manifest("org/model", benchmarks={"coqa": {"version": "1", "grader_version": "f1-1"}}))
    assert again["created"] == first["created"]
    assert set(again["benchmarks"]) == {"math500", "coqa"}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"sampling": {"temperature": 0.7, "top_p": 0.95, "max_new_tokens": 512}}, "sampling"),
        ({"seed": 1}, "seed"),
        ({"chat_template": "other"}, "chat_template_hash"),
        ({"benchmarks": {"math500": {"version": "2", "grader_version": "mv-1"}}}, "math500"),
    ],
)
def test_resume_with_other_settings_is_refused(tmp_path, change, field):
    run = RunDir(tmp_path / "run")
    run.start(manifest("org/model"))
    with pytest.raises(RunMismatchError, match=field):
        run.start(manifest("org/model", **change))


def test_fingerprint_follows_content(tmp_path):
    (tmp_path / "config.json").write_text('{"a": 1}')
    (tmp_path / "model.safetensors").write_bytes(b"\0" * 100)
    first = fingerprint(tmp_path)
    assert fingerprint(tmp_path) == first
    (tmp_path / "model.safetensors").write_bytes(b"\1" + b"\0" * 99)
    assert fingerprint(tmp_path) != first


def test_fingerprint_ignores_subfolders_and_training_records(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    first = fingerprint(tmp_path)
    (tmp_path / "evals" / "final").mkdir(parents=True)  # a training directory's evaluations, checkpoints, ...
    (tmp_path / "evals" / "final" / "scores.json").write_text("{}")
    (tmp_path / "train.json").write_text('{"finished": "now"}')  # how it was trained, not what it is
    assert fingerprint(tmp_path) == first


def test_cache_root_follows_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("RTRANSFER_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    assert cache_dir("lab", "models").is_dir()
    monkeypatch.delenv("RTRANSFER_CACHE")
    assert str(cache_root()).endswith(".cache/rtransfer")
