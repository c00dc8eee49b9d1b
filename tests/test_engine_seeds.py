"""The seed contract (engines.base): a prompt sampled with a seed gets the same answer alone, among 15 other
prompts, in batches of 4 or 16, two batches at a time, in any order, and in a resumed run that answers only the
rest, because each row samples from its own generator. On the tiny random model at temperature 1.0."""

import pytest

from rtransfer.engines.base import SamplingParams
from rtransfer.engines.hf import HFEngine

PROMPTS = [[{"role": "user", "content": f"Question {i}: {'why ' * (i % 5)}is {i} * {i + 3} odd?"}] for i in range(16)]
SEEDS = [1000 + 17 * i for i in range(16)]
PARAMS = SamplingParams(temperature=1.0, max_new_tokens=12)


@pytest.fixture(scope="module")
def engine(tiny_model):
    return HFEngine.load(str(tiny_model), batch_size=16, parallel_batches=1, device="cpu")


def texts(engine, prompts, seeds):
    return [g.text for g in engine.generate(prompts, PARAMS, seeds)]


def test_a_sampled_answer_does_not_depend_on_its_batch(engine, monkeypatch):
    together = texts(engine, PROMPTS, SEEDS)
    assert together == [texts(engine, [p], [s])[0] for p, s in zip(PROMPTS, SEEDS, strict=True)]
    monkeypatch.setattr(engine, "batch_size", 4)
    assert texts(engine, PROMPTS, SEEDS) == together
    monkeypatch.setattr(engine, "parallel_batches", 2)
    assert texts(engine, PROMPTS[::-1], SEEDS[::-1]) == together[::-1]
    assert texts(engine, PROMPTS[9:], SEEDS[9:]) == together[9:]  # a resumed run regenerates the same
    # Rows end at different steps (the rest of a batch draws on after a row is dropped) and say different things.
    assert len(set(together)) == 16 and len({len(g.text) for g in engine.generate(PROMPTS, PARAMS, SEEDS)}) > 1


def test_rows_never_share_draws(engine):
    """The same prompt with other seeds in one batch: other answers; with the same seed twice: the same one."""
    different = texts(engine, [PROMPTS[0]] * 4, [1, 2, 3, 4])
    assert len(set(different)) == 4
    assert texts(engine, [PROMPTS[0], PROMPTS[1], PROMPTS[0]], [5, 6, 5])[::2] == texts(
        engine, [PROMPTS[0]] * 2, [5, 5]
    )
    assert texts(engine, [PROMPTS[0]], [5]) == texts(engine, [PROMPTS[0]], [5])
    assert [g.seed for g in engine.generate(PROMPTS[:3], PARAMS, [4, 5, 6])] == [4, 5, 6]


def test_the_generate_fallback_keeps_the_contract(engine, monkeypatch):
    """A model whose generation config goes to transformers' generate() samples each prompt alone after seeding
    torch with its seed, so it gives the decode loop's answers."""
    fast = texts(engine, PROMPTS[:5], SEEDS[:5])
    monkeypatch.setattr(engine, "fast_decode", False)
    assert texts(engine, PROMPTS[:5], SEEDS[:5]) == fast
