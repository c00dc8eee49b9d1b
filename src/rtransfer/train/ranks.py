"""Which process of a launched run this is, and a barrier: training directories are written by the main process
only, while every process trains.

`accelerate launch` and `torchrun` set RANK and WORLD_SIZE; a plain `rtransfer train` has neither and is the main
(and only) process. The barrier goes through accelerate's PartialState, the state the TRL trainers use afterwards,
so the process group it starts is the one they train in.
"""

import os


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def wait_for_everyone() -> None:
    """Every process waits here until all have arrived (a no-op in one process)."""
    if world_size() > 1:
        from accelerate import PartialState

        PartialState().wait_for_everyone()


def execution() -> dict:
    """How this run is executed, for train.json: processes, backend, accelerate's distributed type and sharding."""
    info: dict = {"processes": world_size()}
    if world_size() > 1:
        from accelerate import PartialState

        state = PartialState()
        info.update(backend=state.backend, distributed_type=str(state.distributed_type.value))
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true":
        info["sharding"] = f"deepspeed-zero{os.environ.get('ACCELERATE_DEEPSPEED_ZERO_STAGE', '?')}"
    elif os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true":
        info["sharding"] = f"fsdp{os.environ.get('FSDP_VERSION', '1')}"
    else:
        info["sharding"] = None
    return info
