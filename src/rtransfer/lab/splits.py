"""Fixed test splits and seeded train splits of the lab tasks, never overlapping.

The test split of a task is the same for every model and seed (it defines the benchmark); train splits are drawn
from another stream and skip every prompt of the task's held-out draw, so no test item is ever trained on. A task
with test-only items (generators.HELD_OUT: lab_format's pairs of instructions) gives half its test split to them;
no train split holds them at all.
"""

import random
from collections.abc import Callable
from functools import cache

from rtransfer.lab.generators import GENERATORS, HELD_OUT, Item

TEST_SIZE = 200
# Bump when a test split is assembled differently (2: lab_format's test split takes half of its items from pairs).
SPLITS_VERSION = "2"


def _draw(
    generator: Callable[[random.Random], Item], stream: str, n: int, exclude: frozenset[str], distinct: bool
) -> list[Item]:
    rng = random.Random(stream)
    items, seen = [], set(exclude)
    for _ in range(n * 50):  # generators draw from large spaces; the bound only guards a too-small one
        item = generator(rng)
        if item.prompt not in seen:
            if distinct:
                seen.add(item.prompt)
            items.append(item)
            if len(items) == n:
                return items
    raise ValueError(f"cannot draw {n} items from stream {stream!r}")


@cache
def _held_out(name: str) -> tuple[Item, ...]:
    """The draw that every train split of `name` skips: the test split, or for a task with test-only items the
    draw that the other half of its test split comes from."""
    return tuple(_draw(GENERATORS[name], f"{name}:test", TEST_SIZE, frozenset(), distinct=True))


@cache
def eval_items(name: str) -> tuple[Item, ...]:
    if name not in HELD_OUT:
        return _held_out(name)
    half = TEST_SIZE // 2
    others = _draw(HELD_OUT[name], f"{name}:test:held-out", half, frozenset(), distinct=True)
    # Interleaved, so that any first n items hold both kinds about equally.
    return tuple(item for pair in zip(_held_out(name)[:half], others, strict=True) for item in pair)


def training_items(name: str, n: int, seed: int = 0) -> list[Item]:
    """`n` training items; a small task (lab_format) repeats items, but none is a test item."""
    exclude = frozenset(i.prompt for i in _held_out(name))
    return _draw(GENERATORS[name], f"{name}:train:{seed}", n, exclude, distinct=False)
