"""lm-evaluation-harness's side of bench/vs_lmeval.py: runs in the bench's own venv (lm-eval from PyPI, never a
dependency of rtransfer), so it imports only lm_eval and torch.

    python lmeval_worker.py REQUESTS.json OUT.json

REQUESTS.json: {"model", "batch_size", "threads", "phases": [{"name", "kind": "generate" | "loglik", "requests"}]},
each generate request [rendered prompt, gen_kwargs], each loglik request [rendered context, continuation] — the
strings rtransfer's engine renders, so both tools tokenize the same text. OUT.json: per phase the seconds of each
repeat of the one lm-eval call (the model loaded and warmed up before) and its outputs.
"""

import json
import sys
import time

import torch


def main() -> None:
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    torch.set_num_threads(spec["threads"])
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=spec["model"], device="cpu", dtype="float32", batch_size=spec["batch_size"])

    def instances(phase, requests):
        kind = "generate_until" if phase["kind"] == "generate" else "loglikelihood"
        return [Instance(kind, {}, tuple(r), i) for i, r in enumerate(requests)]

    def call(phase, requests):
        method = lm.generate_until if phase["kind"] == "generate" else lm.loglikelihood
        return method(instances(phase, requests), disable_tqdm=True)

    out = {"versions": {"lm_eval": _version("lm_eval"), "torch": torch.__version__}, "phases": {}}
    for phase in spec["phases"]:
        call(phase, phase["requests"][:16])  # warm-up, untimed
        seconds = []
        for _ in range(spec["repeats"]):
            start = time.perf_counter()
            results = call(phase, phase["requests"])
            seconds.append(time.perf_counter() - start)
        if phase["kind"] == "loglik":
            results = [float(logprob) for logprob, _ in results]
        out["phases"][phase["name"]] = {"seconds": seconds, "outputs": results}
    with open(sys.argv[2], "w") as f:
        json.dump(out, f)


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


if __name__ == "__main__":
    main()
