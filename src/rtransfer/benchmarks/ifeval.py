"""IFEval (Zhou et al., 2023): 541 prompts with 1–3 verifiable instructions each ("answer in under 100 words",
"no commas", "wrap the answer in JSON", ...), 25 instruction types. Checked by the official checkers
(rtransfer.grading.ifeval).

As lm-eval's `ifeval` task, which the authors ran: the raw `prompt` is the one user message; greedy, one sample;
the paper gives reasoning models 32768 new tokens. The paper reports strict instruction-level accuracy: that is
`score`. `aggregate` adds the other three official metrics:
  prompt_strict / prompt_loose   share of prompts whose instructions are all followed;
  inst_strict / inst_loose       share of all instructions followed (prompts weighted by their instruction count).
Loose mode also accepts the response without its first and/or last line and without `*` (see the grader).
With several samples per prompt, each prompt's values are averaged over its samples first (avg@k).
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rtransfer.benchmarks.base import Doc, Grade, Messages, Settings
from rtransfer.benchmarks.loading import Rows, RowTask, jsonl_rows
from rtransfer.errors import DataError
from rtransfer.grading.ifeval import GRADER_VERSION, INSTRUCTION_TYPES, clean_kwargs, grade_ifeval
from rtransfer.records import Record, doc_grades

FIELDS = ("key", "prompt", "instruction_id_list", "kwargs")


class IFEval(RowTask):
    name = "ifeval"
    version = "1"
    grader_version = GRADER_VERSION
    settings = Settings(samples=1, temperature=0.0, max_new_tokens=32768)
    hf_dataset = "google/IFEval"  # the 541 prompts (kwargs carry None for unused arguments)
    hf_split = "train"
    data_folder = "ifeval"
    id_label = "key"

    # The prompts in file order (`seed` is unused: nothing is shuffled).
    def local_rows(self, folder: Path) -> Rows:
        return jsonl_rows(folder / "input_data.jsonl", ("key", "prompt"))

    def to_doc(self, row: dict[str, Any], where: str, seed: int) -> Doc:
        ids, kwargs = row.get("instruction_id_list"), row.get("kwargs")
        if not isinstance(row.get("prompt"), str) or not row["prompt"].strip():
            raise DataError(f"{where}: 'prompt' must be a non-empty string")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise DataError(f"{where}: 'instruction_id_list' must be a non-empty list of strings")
        if not isinstance(kwargs, list) or len(kwargs) != len(ids):
            raise DataError(f"{where}: 'kwargs' must be a list with one object per instruction ({len(ids)})")
        if not all(k is None or isinstance(k, dict) for k in kwargs):
            raise DataError(f"{where}: each entry of 'kwargs' must be an object")
        unknown = [i for i in ids if i not in INSTRUCTION_TYPES]
        if unknown:
            raise DataError(f"{where}: unknown instruction id(s) {', '.join(unknown)}")
        data = {
            "key": row["key"],
            "prompt": row["prompt"],
            "instruction_id_list": ids,
            "kwargs": [clean_kwargs(k) for k in kwargs],  # as the official harness: None means "not given"
        }
        return Doc(id=str(row["key"]), data=data)

    def prompt(self, doc: Doc) -> Messages:
        return [{"role": "user", "content": doc.data["prompt"]}]

    def grade(self, doc: Doc, response: str) -> Grade:
        d = doc.data
        return grade_ifeval(response, d["instruction_id_list"], d["kwargs"], d["prompt"])

    def gold(self, doc: Doc) -> dict[str, list]:
        """The instructions the response is checked against (IFEval has no answer to compare with)."""
        return {"instruction_id_list": doc.data["instruction_id_list"], "kwargs": doc.data["kwargs"]}

    def aggregate(self, docs: Sequence[Doc], records: Sequence[Record]) -> dict[str, Any]:
        result = super().aggregate(docs, records)
        ids, _, _ = doc_grades(records)  # also refuses ungraded records
        per_doc: dict[str, list[tuple[list[bool], list[bool]]]] = {}
        for r in records:
            strict, loose = r.grading.get("strict"), r.grading.get("loose")
            if not isinstance(strict, list) or not isinstance(loose, list) or not strict or len(strict) != len(loose):
                raise DataError(f"ifeval record ({r.doc_id}, sample {r.sample}) has no per-instruction results")
            per_doc.setdefault(r.doc_id, []).append(([bool(x) for x in strict], [bool(x) for x in loose]))
        metrics = {"prompt_strict": [], "prompt_loose": [], "inst_strict": [], "inst_loose": []}
        weights = []
        for doc_id in ids:
            samples = per_doc[doc_id]
            # avg@k per prompt, then prompts (or, at instruction level, their instructions) pooled.
            metrics["prompt_strict"].append(np.mean([all(s) for s, _ in samples]))
            metrics["prompt_loose"].append(np.mean([all(lo) for _, lo in samples]))
            metrics["inst_strict"].append(np.mean([np.mean(s) for s, _ in samples]))
            metrics["inst_loose"].append(np.mean([np.mean(lo) for _, lo in samples]))
            weights.append(len(samples[0][0]))
        w = np.array(weights, dtype=float)
        for key, values in metrics.items():
            v = np.array(values, dtype=float)
            if not ids:
                result[key] = 0.0
            elif key.startswith("prompt"):
                result[key] = float(100.0 * v.mean())
            else:
                result[key] = float(100.0 * (v * w).sum() / w.sum())
        return result


TASK = IFEval()
