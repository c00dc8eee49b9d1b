"""The runner: records, scores, resume after a crash, determinism, settings checks."""

import json

import pytest

from rtransfer.benchmarks.base import Doc, Grade, Settings, Task
from rtransfer.engines.base import AnswersInOrder, Generation
from rtransfer.engines.hf import HFEngine
from rtransfer.errors import RunMismatchError
from rtransfer.evaluate import EvalPlan, Overrides, evaluate
from rtransfer.records import read_records
from rtransfer.runs import RunDir


class Sums(Task):
    """A toy generation task: the answer is the sum, graded by exact match on the last word."""

    name, group = "sums", "math"
    settings = Settings(samples=2, temperature=0.7, top_p=0.9, max_new_tokens=8)

    def load(self, data_dir, seed=0):
        return [Doc(f"s{i}", {"a": i, "b": 2 * i}) for i in range(10)]

    def prompt(self, doc):
        return [{"role": "user", "content": f"{doc.data['a']} + {doc.data['b']} ="}]

    def grade(self, doc, response):
        words = response.split()
        answer = words[-1] if words else None
        return Grade(float(answer == str(doc.data["a"] + doc.data["b"])), extracted=answer)


class Scripted(AnswersInOrder):
    """An engine that answers from a script: correct for even documents, wrong for odd ones."""

    def __init__(self, fail_after: int | None = None):
        self.calls, self.prompts, self.fail_after = 0, 0, fail_after

    def generate(self, prompts, params, seeds):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt  # what Ctrl-C or a crash does mid-run
        self.prompts += len(prompts)
        out = []
        for p in prompts:
            a, b = (int(x) for x in p[0]["content"].rstrip(" =").split(" + "))
            out.append(Generation(text=f"so {a + b if a % 2 == 0 else -1}", tokens=2, finish_reason="stop"))
        return out

    def loglikelihood(self, requests):
        raise AssertionError("not used")

    def describe(self):
        return {"engine": "scripted", "model": "scripted-model", "chat_template": None}


def plan(**kw):
    return EvalPlan(tasks=[Sums()], chunk=4, **kw)


def test_records_scores_and_manifest(tmp_path):
    run = RunDir(tmp_path / "run")
    results = evaluate(Scripted(), plan(), run, name="m", base="b")
    assert results["sums"]["score"] == 50.0 and results["sums"]["n"] == 10 and results["sums"]["samples"] == 2
    lo, hi = results["sums"]["ci"]
    assert lo < 50.0 < hi
    records = read_records(run.records_path("sums"))
    assert len(records) == 20 and {r.sample for r in records} == {0, 1}
    assert records[0].extracted == "0" and records[0].grade == 1.0 and records[0].extra["finish_reason"] == "stop"
    assert len({r.seed for r in records}) == 20
    manifest = run.manifest()
    assert manifest["name"] == "m" and manifest["base"] == "b" and manifest["benchmarks"]["sums"]["samples"] == 2
    assert manifest["benchmarks"]["sums"]["sampling"]["temperature"] == 0.7
    assert json.loads((run.path / "scores.json").read_text())["benchmarks"]["sums"]["score"] == 50.0


def test_manifest_records_provenance(tmp_path):
    first = evaluate(Scripted(), plan(limit=4), RunDir(tmp_path / "a")) and RunDir(tmp_path / "a").manifest()
    again = evaluate(Scripted(), plan(), RunDir(tmp_path / "b")) and RunDir(tmp_path / "b").manifest()
    assert first["limit"] == 4 and again["limit"] is None and first["data_dir"] is None
    assert first["versions"]["torch"] and first["versions"]["math-verify"] and first["versions"]["rtransfer"]
    assert first["provenance"]["sums"] == again["provenance"]["sums"]  # all documents hashed, before --limit
    assert first["provenance"]["sums"]["n"] == 10
    other = Sums()
    other.load = lambda data_dir, seed=0: Sums().load(data_dir, seed)[1:]
    changed = evaluate(Scripted(), EvalPlan(tasks=[other], chunk=4), RunDir(tmp_path / "c"))
    assert (
        changed
        and RunDir(tmp_path / "c").manifest()["provenance"]["sums"]["docs"] != first["provenance"]["sums"]["docs"]
    )


def test_interrupted_run_resumes_without_redoing_or_duplicating(tmp_path):
    run = RunDir(tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        evaluate(Scripted(fail_after=2), plan(), run)
    assert len(read_records(run.records_path("sums"))) == 8  # two chunks of 4 made it to disk
    engine = Scripted()
    results = evaluate(engine, plan(), run)
    assert engine.prompts == 12 and results["sums"]["score"] == 50.0
    keys = [
        json.loads(line)["doc_id"] + str(json.loads(line)["sample"])
        for line in run.records_path("sums").read_text().splitlines()
    ]
    assert len(keys) == len(set(keys)) == 20


def test_limit_and_overrides(tmp_path):
    run = RunDir(tmp_path / "run")
    results = evaluate(Scripted(), plan(limit=3, overrides=Overrides(samples=1, temperature=0.0)), run)
    assert results["sums"]["n"] == 3 and results["sums"]["samples"] == 1
    assert run.manifest()["sampling"] == {"samples": 1, "temperature": 0.0}


def test_resume_with_other_settings_is_refused(tmp_path):
    run = RunDir(tmp_path / "run")
    evaluate(Scripted(), plan(limit=2), run)
    with pytest.raises(RunMismatchError, match="sampling"):
        evaluate(Scripted(), plan(limit=2, overrides=Overrides(temperature=0.2)), run)


def test_greedy_runs_are_identical_and_batch_size_does_not_matter(tmp_path, tiny_model):
    greedy = Overrides(temperature=0.0, samples=1)
    outputs = []
    for i, batch_size in enumerate((4, 4, 1)):
        run = RunDir(tmp_path / f"run{i}")
        evaluate(HFEngine.load(str(tiny_model), batch_size=batch_size, device="cpu"), plan(overrides=greedy), run)
        outputs.append([(r.doc_id, r.response, r.grade) for r in read_records(run.records_path("sums"))])
        outputs[-1].sort()
    assert outputs[0] == outputs[1] == outputs[2]
    assert len({response for _, response, _ in outputs[0]}) > 1


def test_one_engine_call_per_benchmark_still_writes_each_batch_as_it_ends(tmp_path, tiny_model):
    """The HF engine gets every pending prompt at once (so it sorts and batches all of them) and streams them back
    a batch at a time: a run stopped mid-call keeps every finished batch, and the rerun does only the rest."""
    engine = HFEngine.load(str(tiny_model), batch_size=3, device="cpu")
    calls = []
    real = engine.generate_stream

    def counted(prompts, params, seeds):
        calls.append(len(prompts))
        return real(prompts, params, seeds)

    engine.generate_stream = counted
    run = RunDir(tmp_path / "run")

    def stop_after_two_batches(name):
        def progress(done, total):
            if done >= 6:
                raise KeyboardInterrupt

        return progress

    greedy = Overrides(temperature=0.0, samples=1)
    with pytest.raises(KeyboardInterrupt):
        evaluate(engine, EvalPlan(tasks=[Sums()], overrides=greedy), run, progress=stop_after_two_batches)
    kept = len(read_records(run.records_path("sums")))
    assert calls == [10] and 6 <= kept < 10  # two batches of 3 at least, and not the whole call
    evaluate(engine, EvalPlan(tasks=[Sums()], overrides=greedy), run)
    assert calls == [10, 10 - kept] and len(read_records(run.records_path("sums"))) == 10


def test_a_score_ci_does_not_depend_on_the_order_records_were_written():
    """Two parallel batches finish in either order, so the same records reach the file in different orders
    (measured on the lab suite: identical records, another CI). The CI resamples documents in id order."""
    import random

    from rtransfer.evaluate import bootstrap_ci
    from rtransfer.records import Record

    rng = random.Random(0)
    records = [Record(f"d{i:03d}", 0, "p", "r", grade=float(rng.random() < 0.3)) for i in range(120)]
    shuffled = rng.sample(records, len(records))
    assert bootstrap_ci(shuffled) == bootstrap_ci(records)
    flipped = [Record(r.doc_id, 0, "p", "r", grade=1.0 - r.grade) for r in records]
    assert bootstrap_ci(flipped) != bootstrap_ci(records)  # the CI does follow the grades
