"""The training methods, each declared once: what the CLI, the study's scheduler and the report know of a method
is read from here. A new method is a recipe dataclass (train/config.py, with its RECIPES entry), a trainer module
(train/<method>.py) and one entry below.

Light on purpose (no torch, no TRL): the report imports it. A method's trainer is named as "module:function" and
imported when it trains.
"""

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from rtransfer.train.config import RECIPES, Recipe


@dataclass(frozen=True)
class Method:
    name: str
    data: str  # what it trains on: "traces" (a teacher's solutions) or "queries" (problems with gold answers)
    policy: str  # "off": another model's samples; "on": the policy's own samples
    cost: int  # scheduling order of arms trained side by side: lower starts first (the longest arms first)
    marker: str  # matplotlib marker of its models in the report's figures (as the paper's Figure 1)
    trainer: str  # "module:function", called as function(base, data, recipe, out, callbacks) -> training directory
    help: str  # one line for `rtransfer train --help`
    # what it learns from: "teacher" (a teacher's tokens: its traces, or its every next-token distribution) or
    # "reward" (the grader's verdict on the policy's own answers); with `policy`, the study's 2 × 2 grid
    signal: str = "reward"

    @property
    def recipe(self) -> type[Recipe]:
        return RECIPES[self.name]

    def train_function(self) -> Callable:
        module, _, function = self.trainer.partition(":")
        return getattr(importlib.import_module(module), function)


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        # GRPO and on-policy SFT sample every step, SFT never: longest first, so the longest arm does not start last.
        Method(
            "sft",
            data="traces",
            policy="off",
            cost=2,
            marker="o",
            trainer="rtransfer.train.sft:train_sft",
            help="off-policy SFT on teacher traces (TRL SFTTrainer)",
            signal="teacher",
        ),
        Method(
            "onpolicy",
            data="queries",
            policy="on",
            cost=1,
            marker="s",
            trainer="rtransfer.train.onpolicy:train_onpolicy",
            help="on-policy SFT: the policy's own correct answers, resampled every step",
        ),
        Method(
            "grpo",
            data="queries",
            policy="on",
            cost=0,
            marker="^",
            trainer="rtransfer.train.grpo:train_grpo",
            help="GRPO with a correctness reward (TRL GRPOTrainer)",
        ),
        Method(
            "opd",
            data="queries",
            policy="on",
            cost=0,
            marker="D",
            trainer="rtransfer.train.distill:train_distill",
            help="on-policy distillation: the student's samples, the teacher's every token (TRL DistillationTrainer)",
            signal="teacher",
        ),
    )
}
ALIASES = {"distill": "opd"}  # `rtransfer train distill` is `rtransfer train opd`

# A survey's published models are labelled by the paper's families, not by a method trained here.
SURVEY_POLICY = {"SFT": "off", "RL": "on"}


def policy_of(method: str | None) -> str | None:
    """on / off for a method of this registry or a survey family; None for a base or a reference."""
    if method in METHODS:
        return METHODS[method].policy
    return SURVEY_POLICY.get(method or "")
