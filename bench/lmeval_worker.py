"""lm-evaluation-harness's side of bench/vs_lmeval.py: runs in the bench's own venv (lm-eval from PyPI, never a
dependency of rtransfer), so it imports only lm_eval and torch.

    python lmeval_worker.py REQUESTS.json

REQUESTS.json: {"model", "batch_size", "phases": [{"name", "kind": "generate" | "loglik", "requests"}]}, each
generate request [rendered prompt, gen_kwargs], each loglik request [rendered context, continuation] — the strings
rtransfer's engine renders, so both tools tokenize the same text. The model is loaded and each phase warmed up
once; then every line on stdin, {"phase": NAME, "threads": N}, runs that phase's one lm-eval call with N torch
threads and answers one line on stdout, "RESULT " + {"seconds", "outputs"}, so the bench can alternate the two
tools run by run while lm-eval's model stays loaded.
"""

import json
import sys
import time

import torch


def main() -> None:
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=spec["model"], device="cpu", dtype="float32", batch_size=spec["batch_size"])
    phases = {phase["name"]: phase for phase in spec["phases"]}

    def call(phase, requests):
        kind = "generate_until" if phase["kind"] == "generate" else "loglikelihood"
        method = lm.generate_until if phase["kind"] == "generate" else lm.loglikelihood
        return method([Instance(kind, {}, tuple(r), i) for i, r in enumerate(requests)], disable_tqdm=True)

    for phase in phases.values():
        call(phase, phase["requests"][:16])  # warm-up, untimed
    _reply({"versions": {"lm_eval": _version("lm_eval"), "torch": torch.__version__}})
    for line in sys.stdin:
        order = json.loads(line)
        phase = phases[order["phase"]]
        torch.set_num_threads(order["threads"])
        start = time.perf_counter()
        results = call(phase, phase["requests"])
        seconds = time.perf_counter() - start
        if phase["kind"] == "loglik":
            results = [float(logprob) for logprob, _ in results]
        _reply({"seconds": seconds, "outputs": results})


def _reply(message: dict) -> None:
    print("RESULT " + json.dumps(message), flush=True)


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


if __name__ == "__main__":
    main()
