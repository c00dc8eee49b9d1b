"""Which process of a launched run this is, and a barrier: training directories are written by the main process
only, while every process trains.

`accelerate launch` and `torchrun` set RANK and WORLD_SIZE; a plain `rtransfer train` has neither and is the main
(and only) process. The barrier's process group is started by accelerate's PartialState, the state the TRL trainers
use afterwards, so it is the one they train in.
"""

import os


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def wait_for_everyone() -> None:
    """Every process waits here until all have arrived (a no-op in one process).

    torch's barrier, not PartialState.wait_for_everyone: before a trainer's arguments exist, a CPU launch's
    PartialState says distributed type NO, and its wait returns at once (measured with ddp.yaml, 2 processes)."""
    if world_size() > 1:
        import torch.distributed as dist
        from accelerate import PartialState

        PartialState()  # starts the process group (once), the one the trainers then use
        dist.barrier()


def finish() -> None:
    """Every process waits for the others, then ends the process group (a no-op in one process). A process that
    exits with gloo's group alive can abort at interpreter exit ("terminate called without an active exception",
    SIGABRT; pytorch issue 190489, seen once in this suite under load), failing a run that finished its work."""
    import torch.distributed as dist

    if world_size() > 1 and dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def execution(accelerator=None) -> dict:
    """How this run is executed, for train.json: processes, backend, and the sharding the trainer's accelerator
    applies (what it does, not what the launcher asked for: on a CPU-only machine an FSDP config shards nothing)."""
    import torch

    info: dict = {"processes": world_size(), "sharding": None}
    if not torch.cuda.is_available():
        info["threads"] = torch.get_num_threads()  # per process: the recipe's `threads` (train.run.fixed_threads)
    if accelerator is None:
        return info
    state = accelerator.state
    info.update(backend=state.backend, distributed_type=str(state.distributed_type.value))
    if state.distributed_type.value == "DEEPSPEED":
        info["sharding"] = f"deepspeed-zero{state.deepspeed_plugin.zero_stage}"
    elif state.distributed_type.value == "FSDP":
        info["sharding"] = f"fsdp{getattr(state.fsdp_plugin, 'fsdp_version', 1)}"
    return info
