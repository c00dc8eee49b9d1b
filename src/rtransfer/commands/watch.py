"""`rtransfer watch DIR --base BASE`: the transfer of every checkpoint a training run saves into DIR, measured as it
appears, for any trainer (verl, OpenRLHF, plain PyTorch, TRL): each checkpoint is scored on the suite and compared
with the base (evaluated once), one line per checkpoint, the same metrics as the TRL callback
(rtransfer.integrations.trl) in DIR/transfer/transfer.jsonl, each point's run directory beside it for `rtransfer ti`.

A checkpoint is a folder of DIR named checkpoint-N, global_step_N, global_stepN, step-N or step_N (N: the step)
holding a Hugging Face model (config.json and weights) itself or in huggingface/ or actor/huggingface/ (verl
writes the latter when its checkpoint contents include hf_model; OpenRLHF with --save_hf_ckpt). It is read once it
is whole: a TRL checkpoint once trainer_state.json is written (the trainer writes it last), any other once its
files stay unchanged over one polling interval. Killed and started again, the watcher repeats nothing: measured
checkpoints are in transfer.jsonl and an interrupted evaluation keeps its records.
"""

import argparse
import re
import time
from pathlib import Path

EPILOG = """examples:
  rtransfer watch runs/grpo --base Qwen/Qwen3-4B-Base --suite lab --limit 100
  rtransfer watch checkpoints/ --base Qwen/Qwen3-4B-Base --suite math500,gpqa_diamond,ifeval --once
  rtransfer watch runs/sft --base lab --threshold -2      an alert when a transfer group's CI lies below -2 points"""

STEP = re.compile(r"^(?:checkpoint-|global_step_?|step[-_])(\d+)$")
MODEL_PLACES = ("", "huggingface", "actor/huggingface")


def register(sub) -> None:
    p = sub.add_parser(
        "watch",
        help="measure the transfer of each checkpoint a training run saves, as it appears",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dir", type=Path, help="the folder the trainer saves its checkpoints into")
    p.add_argument("--base", required=True, help="the base model (a folder, a hub id, or lab)")
    p.add_argument("--suite", default="lab", help="a suite or comma-separated benchmarks (default: lab)")
    p.add_argument("--limit", type=int, default=0, help="the first N documents per benchmark (0: all)")
    p.add_argument("--data-dir", type=Path, help="local benchmark files")
    p.add_argument("--out", type=Path, help="the monitor's folder (default: DIR/transfer)")
    p.add_argument("--thinking", choices=("on", "off"), help="the chat template's enable_thinking")
    p.add_argument("--batch-size", type=int, default=64, help="prompts per generate() call (default 64)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates of the CIs (default 1000)")
    p.add_argument("--threshold", type=float, default=0.0, help="forgetting alert below this change (points)")
    p.add_argument("--interval", type=float, default=60.0, help="seconds between looks at DIR (default 60)")
    p.add_argument("--once", action="store_true", help="the run has finished: measure what DIR holds, then stop")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # lazy: a command loads its library when it runs, so every command starts fast
    from rtransfer.errors import DataError, RtransferError, first_line
    from rtransfer.lab.build import resolve_model
    from rtransfer.monitor import Monitor, point_line, say

    if not args.dir.is_dir():
        raise DataError(f"{args.dir} is not a folder")
    if args.interval <= 0 or args.limit < 0:
        raise DataError("--interval must be > 0 and --limit >= 0")
    monitor = Monitor(
        base=resolve_model(args.base),
        out=args.out or args.dir / "transfer",
        suite=args.suite,
        limit=args.limit,
        data_dir=args.data_dir,
        thinking=None if args.thinking is None else args.thinking == "on",
        name=args.dir.resolve().name,
        batch_size=args.batch_size,
        bootstrap=args.bootstrap,
        threshold=args.threshold,
    )
    monitor.plan()  # a bad suite or data folder fails now, before the base is evaluated
    say(f"watching {args.dir} for checkpoints; the base first")
    monitor.evaluate_base()
    seen: dict[Path, tuple] = {}
    failed: set[Path] = set()
    while True:
        for step, folder in whole_checkpoints(args.dir, seen, finished=args.once):
            if step in monitor.points() or folder in failed:
                continue
            try:
                monitor.evaluate_folder(step, folder)
            except (RtransferError, OSError) as err:  # e.g. a checkpoint the trainer rotated away meanwhile
                failed.add(folder)
                say(f"step {step}: {folder} could not be read ({first_line(err)}); skipped")
                continue
            point = monitor.compare(step)
            print(point_line(point), flush=True)
            for alert in point.alerts:
                say(f"forgetting: {alert}")
        if args.once:
            return 0
        time.sleep(args.interval)


def whole_checkpoints(root: Path, seen: dict[Path, tuple], finished: bool = False) -> list[tuple[int, Path]]:
    """(step, model folder) of each checkpoint under `root` that is whole, by step. `seen` holds each other
    checkpoint's files as last looked at: one is whole once they are unchanged since the previous look, or at
    once when the run has `finished`."""
    found = []
    for folder in root.iterdir():
        match = STEP.match(folder.name)
        model = match and next((folder / p for p in MODEL_PLACES if (folder / p / "config.json").exists()), None)
        if not model:
            continue
        if finished or (folder / "trainer_state.json").exists():
            found.append((int(match.group(1)), model))
            continue
        files = tuple(
            sorted((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in folder.rglob("*") if f.is_file())
        )
        if seen.get(folder) == files:
            found.append((int(match.group(1)), model))
        seen[folder] = files
    return sorted(found)
