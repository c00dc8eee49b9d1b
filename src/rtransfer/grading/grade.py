"""What a grader returns. Graders sit below benchmarks: they take text (or log-likelihoods) and a gold answer."""

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Grade:
    score: float  # in [0, 1]
    extracted: Any = None  # what the grader read from the answer (None: nothing found)
    weight: float = 1.0  # the document's weight in a ratio metric (IFEval instruction level), else 1
    extra: dict = field(default_factory=dict)  # grader details worth keeping in the record
