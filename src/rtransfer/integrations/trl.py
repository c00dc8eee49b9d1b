"""TransferCallback: the live model's transfer against its base while a TRL (or any transformers) trainer trains.

    from rtransfer.integrations.trl import TransferCallback
    trainer = SFTTrainer(...)   # or GRPOTrainer, DPOTrainer, Trainer
    trainer.add_callback(TransferCallback(trainer, base="Qwen/Qwen3-4B-Base", suite="lab", limit=100, every=200))
    trainer.train()

Every `every` optimiser steps (and at the end of training) the main process scores the live weights on the suite
in process (rtransfer's HF engine over the trainer's own model: no copy, no reload), compares them with the base
(evaluated once, cached by content: monitor.Monitor) and logs `transfer/Δmath`, `transfer/Δother`, `transfer/Δnon`,
`transfer/TI_other`, `transfer/TI_non` and their CI bounds (`..._low`, `..._high`) through the trainer's own log
call, so TensorBoard, W&B, Trackio and the console get them as `report_to` says. The numbers are those of
`rtransfer ti` on the run directories it writes (OUTPUT_DIR/transfer by default).

- Training is not perturbed: the evaluation runs in eval mode without gradients and restores every RNG it may
  draw from (the weights after training are the same to the bit with and without the callback).
- Several processes (DDP): the main process evaluates; the others go on and wait at the next gradient all-reduce,
  which is the cheapest they can do (an evaluation longer than the process group's timeout, 30 min by default,
  would end the run: keep `limit` small, or watch saved checkpoints with `rtransfer watch`). Sharded weights
  (ZeRO-3, FSDP) cannot be run by one process: the callback says so once and stays off; use `rtransfer watch`.
- A forgetting alert (a transfer group whose change has its whole CI below `threshold` points) is printed once per
  group; `stop_on_forgetting=True` also ends training there, with a checkpoint of that step (in every process).
- Bad input (an unknown benchmark, a base whose tokenizer is not the trained model's, a base that cannot be
  loaded) is one line in the training log, and the callback stays off: it never ends a training run.
"""

import contextlib
import os
import random
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from rtransfer.engines.hf import HFEngine
from rtransfer.errors import RtransferError, first_line
from rtransfer.monitor import Monitor, point_line, say


class TransferCallback(TrainerCallback):
    def __init__(
        self,
        trainer=None,
        *,
        base: str,
        suite: str = "lab",
        limit: int | None = None,
        every: int = 0,
        at_end: bool = True,
        out: str | Path | None = None,
        name: str | None = None,
        method: str | None = None,
        data_dir: str | Path | None = None,
        thinking: bool | None = None,
        batch_size: int = 64,
        bootstrap: int = 1000,
        seed: int = 0,
        threshold: float = 0.0,
        stop_on_forgetting: bool = False,
    ):
        """`trainer`: the trainer the metrics are logged through (without it they go to transfer.jsonl and the
        console only); `every`: evaluate every N optimiser steps (0: only at the end); `out`: the monitor's folder
        (default OUTPUT_DIR/transfer); the rest as monitor.Monitor."""
        if every < 0:
            raise ValueError(f"every must be >= 0, not {every}")
        self.trainer, self.every, self.at_end, self.stop_on_forgetting = trainer, every, at_end, stop_on_forgetting
        self.out = out
        self.settings = {
            "base": base,
            "suite": suite,
            "limit": limit,
            "data_dir": Path(data_dir) if data_dir else None,
            "thinking": thinking,
            "batch_size": batch_size,
            "bootstrap": bootstrap,
            "seed": seed,
            "threshold": threshold,
        }
        self.name, self.method = name, method
        self.monitor: Monitor | None = None
        self.off: str | None = None  # why the callback stopped measuring
        self.pending: dict[str, float] = {}  # metrics for the next log call
        if trainer is not None:  # first in line, so that every logger sees what on_log adds
            trainer.callback_handler.callbacks.insert(0, self)
            trainer.callback_handler.add_callback = _once(trainer.callback_handler.add_callback, self)

    # --- transformers' events -------------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, model=None, processing_class=None, **kwargs):
        if self.monitor is not None or self.off:
            return
        out = Path(self.out) if self.out else Path(args.output_dir) / "transfer"
        name = self.name or Path(args.output_dir).name or "model"
        self.monitor = Monitor(out=out, name=name, method=self.method, **self.settings)
        if _sharded(self.trainer, args):
            why = "the weights are sharded over processes (ZeRO-3 or FSDP), so one process cannot run them"
            self._stop(why, said=state.is_world_process_zero)
            return
        if not state.is_world_process_zero:
            return
        try:
            self.monitor.plan()
            tokenizer = processing_class or kwargs.get("tokenizer")
            if tokenizer is None:
                raise ValueError("the trainer has no tokenizer (processing_class) to render the benchmarks' prompts")
            self.monitor.evaluate_base()
            _same_tokenizer(self.monitor.base, tokenizer)
        except Exception as err:  # whatever goes wrong here, the training run goes on
            self._stop(_first_line(err))

    def on_step_end(self, args, state, control, model=None, processing_class=None, **kwargs):
        if self.every and state.global_step % self.every == 0:
            self._measure(args, state, control, model, processing_class or kwargs.get("tokenizer"))

    def on_train_end(self, args, state, control, model=None, processing_class=None, **kwargs):
        if self.at_end and (not self.every or state.global_step % self.every):
            self._measure(args, state, control, model, processing_class or kwargs.get("tokenizer"), log=False)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.pending and logs is not None:
            logs.update(self.pending)  # the same dict every logger after this callback receives
            if state.log_history:  # the trainer appended a copy of logs before calling the loggers
                state.log_history[-1].update(self.pending)
            self.pending = {}

    # --- measuring ------------------------------------------------------------------------------------------
    def _measure(self, args, state, control, model, tokenizer, log: bool = True) -> None:
        """The point of this step, on the main process. Every process takes the same decisions whatever happens
        there (measured or off): all log at this step, and all stop when the main one says so, since the trainer's
        log and save are collective."""
        if log:
            control.should_log = True
        forgetting = False
        if not self.off and self.monitor is not None and state.is_world_process_zero:
            forgetting = self._point(state.global_step, model, tokenizer, log)
        if self.stop_on_forgetting and _from_main(args, forgetting):
            control.should_training_stop = control.should_save = True

    def _point(self, step: int, model, tokenizer, log: bool) -> bool:
        """Measure `step`, say it, hand its metrics to the trainer's log; whether it raised a forgetting alert."""
        try:
            with live_engine(model, tokenizer, self.settings["batch_size"], self.settings["thinking"]) as engine:
                self.monitor.evaluate_engine(step, engine)
            point = self.monitor.compare(step)
        except Exception as err:  # whatever goes wrong here, the training run goes on
            self._stop(f"step {step}: {_first_line(err)}")
            return False
        say(f"transfer at {point_line(point)}")
        stop = "; training stops here (stop_on_forgetting), saved as at a checkpoint" if self.stop_on_forgetting else ""
        for alert in point.alerts:
            say(f"forgetting: {alert}{stop}")
        if log and self.trainer is not None:
            self.pending = dict(point.metrics)
        elif self.trainer is not None:
            self.trainer.log(dict(point.metrics))
        return bool(point.alerts)

    def _stop(self, why: str, said: bool = True) -> None:
        self.off = why
        if said:  # once per run, not once per process
            say(f"TransferCallback is off: {why}")


@contextlib.contextmanager
def live_engine(model, tokenizer, batch_size: int, thinking: bool | None):
    """rtransfer's engine over the trainer's model as it is, in eval mode and without gradients; the train mode and
    every random state (python, numpy, torch on the CPU and the GPUs) as they were afterwards."""
    import numpy as np
    import torch

    was_training = model.training
    python, numpy = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count()))
    model.eval()
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            # one thread per batch: what training logs does not depend on a speed measurement (engines/calibration)
            yield HFEngine(model, tokenizer, batch_size=batch_size, one_thread_per_batch=True, thinking=thinking)
    finally:
        model.train(was_training)
        random.setstate(python)
        np.random.set_state(numpy)


def _from_main(args, value: bool) -> bool:
    """The main process's `value`, on every process (a broadcast when several run)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return value
    flag = torch.tensor([int(value)], device=args.device)
    dist.broadcast(flag, src=0)
    return bool(flag.item())


def _sharded(trainer, args) -> bool:
    """ZeRO-3 or FSDP: no process holds the whole model."""
    from transformers.integrations import is_deepspeed_zero3_enabled

    if getattr(trainer, "is_fsdp_enabled", False) or getattr(args, "fsdp", None):
        return True
    return os.environ.get("ACCELERATE_USE_FSDP", "").lower() in ("1", "true") or is_deepspeed_zero3_enabled()


def _same_tokenizer(base: str, tokenizer) -> None:
    """The base's tokenizer must be the trained model's: a different one means a wrong base."""
    from transformers import AutoTokenizer

    tokenizer = getattr(tokenizer, "tokenizer", tokenizer)  # a processor holds its tokenizer
    theirs = AutoTokenizer.from_pretrained(base)
    if theirs.get_vocab() != tokenizer.get_vocab():
        raise ValueError(f"the base {base!r} has another tokenizer than the trained model: is it the right base?")


def _once(add_callback, callback):
    """trainer.add_callback that does not add `callback` a second time (it placed itself first already)."""

    def add(cb: Any):
        if cb is not callback:
            add_callback(cb)

    return add


def _first_line(err: BaseException) -> str:
    """errors.first_line, with the type's name in front of an error nobody expected (a bug, not bad input)."""
    expected = isinstance(err, RtransferError | OSError | ValueError)
    return first_line(err) if expected else f"{type(err).__name__}: {first_line(err)}"
