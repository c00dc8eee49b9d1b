"""A training arm's launcher prefix (`launch = [...]` in a study config): the shipped accelerate configs by name,
the launcher resolved from the running interpreter, and the number of processes it starts.

`accelerate` or `torchrun` at the head of a prefix runs as `python -m accelerate.commands.launch` /
`python -m torch.distributed.run` with this interpreter: a study started as `.venv/bin/rtransfer study` without
an activated environment would otherwise find another environment's launcher on PATH, or none. Leading
`NAME=VALUE` entries (e.g. `CUDA_VISIBLE_DEVICES=0,1,2,3`) go to the launcher's environment through `env`.
"""

import re
import sys
from importlib.resources import files
from pathlib import Path

import yaml  # accelerate's config format

from rtransfer.errors import RtransferError

LAUNCHERS = {
    "accelerate": [sys.executable, "-m", "accelerate.commands.launch"],  # `accelerate launch ...`: drops "launch"
    "torchrun": [sys.executable, "-m", "torch.distributed.run"],
}
ENV_ENTRY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=.*")


def shipped_config(part: str) -> str:
    """{zero3} / {fsdp2} / {ddp} in a launch prefix: the path of the accelerate config shipped with rtransfer."""
    if part.startswith("{") and part.endswith("}"):
        path = Path(str(files("rtransfer") / "data" / "accelerate" / f"{part[1:-1]}.yaml"))
        if not path.exists():
            raise RtransferError(f"launch: no shipped accelerate config {part} (ddp, fsdp2, zero3)")
        return str(path)
    return part


def resolved_launcher(launch: tuple[str, ...] | list[str]) -> list[str]:
    """The prefix as it runs: shipped configs by path, `accelerate launch` / `torchrun` with this interpreter,
    environment entries through `env`."""
    parts = [shipped_config(p) for p in launch]
    env = []
    while parts and ENV_ENTRY.fullmatch(parts[0]):
        env.append(parts.pop(0))
    if parts and parts[0] == "env":  # already an env prefix: keep its entries
        parts.pop(0)
        while parts and ENV_ENTRY.fullmatch(parts[0]):
            env.append(parts.pop(0))
    if parts and parts[0] in LAUNCHERS:
        head = parts.pop(0)
        if head == "accelerate":
            if not parts or parts[0] != "launch":
                raise RtransferError(f"launch: `accelerate` must be followed by `launch`, not {parts[:1]}")
            parts.pop(0)
        parts = [*LAUNCHERS[head], *parts]
    return ["env", *env, *parts] if env else parts


def launch_processes(launch: tuple[str, ...] | list[str]) -> int:
    """The training processes a launcher starts: its --num_processes / --nproc_per_node (times --num_machines /
    --nnodes), else the num_processes of its accelerate config file, else 1."""
    flags: dict[str, str] = {}
    for i, part in enumerate(launch):
        name, eq, value = part.partition("=")
        if name.startswith("--"):
            flags[name.lstrip("-").replace("-", "_")] = value if eq else (launch[i + 1] if i + 1 < len(launch) else "")
    per_node = flags.get("num_processes") or flags.get("nproc_per_node")
    if per_node is None and "config_file" in flags:
        per_node = str(_config_processes(Path(shipped_config(flags["config_file"]))))
    nodes = flags.get("num_machines") or flags.get("nnodes") or "1"
    if not str(per_node or 1).isdigit() or not str(nodes).isdigit():
        raise RtransferError(f"launch: cannot read the process count from {' '.join(launch)}")
    return int(per_node or 1) * int(nodes)


def _config_processes(path: Path) -> int:
    try:
        return int((yaml.safe_load(path.read_text()) or {}).get("num_processes", 1))
    except OSError:
        raise RtransferError(f"launch: cannot read the accelerate config file {path}") from None
