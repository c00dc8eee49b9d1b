"""Fixed test splits and seeded train splits of the lab tasks, never overlapping.

The test split of a task is the same for every model and seed (it defines the benchmark); train splits are drawn
from another stream and skip every prompt of the test split, so no test item is ever trained on.
"""

import random
from functools import cache

from rtransfer.lab.generators import GENERATORS, Item

TEST_SIZE = 200


def _draw(name: str, stream: str, n: int, exclude: frozenset[str], distinct: bool) -> list[Item]:
    rng = random.Random(f"{name}:{stream}")
    items, seen = [], set(exclude)
    for _ in range(n * 50):  # generators draw from large spaces; the bound only guards a too-small one
        item = GENERATORS[name](rng)
        if item.prompt not in seen:
            if distinct:
                seen.add(item.prompt)
            items.append(item)
            if len(items) == n:
                return items
    raise ValueError(f"{name}: cannot draw {n} items from stream {stream!r}")


@cache
def eval_items(name: str) -> tuple[Item, ...]:
    return tuple(_draw(name, "test", TEST_SIZE, frozenset(), distinct=True))


def training_items(name: str, n: int, seed: int = 0) -> list[Item]:
    """`n` training items; a small task (lab_format) repeats items, but none is a test item."""
    return _draw(name, f"train:{seed}", n, frozenset(i.prompt for i in eval_items(name)), distinct=False)
