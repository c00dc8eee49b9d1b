"""`rtransfer lab`: the embedded lab. `lab build` gives the tiny base model: the one shipped with rtransfer for the
default settings, else (or with --rebuild) trained here, from the shipped pre-trained model or (another --seed,
--from-scratch) from nothing; either way cached under the cache root."""

import json
import sys
from dataclasses import asdict
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("lab", help="the embedded lab: build the tiny base model", description=__doc__)
    lab = p.add_subparsers(dest="lab_command", metavar="LAB_COMMAND", required=True)
    b = lab.add_parser("build", help="pre-train the lab's base model (or reuse the cached one)")
    b.add_argument("--out", type=Path, help="also copy the model directory here")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--quick", action="store_true", help="a seconds-long miniature, for tests and smoke runs")
    b.add_argument(
        "--rebuild",
        action="store_true",
        help="train it again even where the cache or the package already holds this base",
    )
    b.add_argument(
        "--from-scratch",
        action="store_true",
        help="pre-train here too instead of starting from the shipped pre-trained model (about 25 min on 2 cores)",
    )
    b.add_argument(
        "--teacher",
        action="store_true",
        help="the lab teacher model of that base (on-policy distillation's teacher: docs/lab.md)",
    )
    b.add_argument("--json", action="store_true", help="print the build report as JSON")
    b.set_defaults(run=build)


def build(args) -> int:
    from tqdm import tqdm

    # lazy: a command loads its library when it runs, so every command starts fast
    from rtransfer.lab.build import build_base, lab_config, teacher_config

    config = lab_config(args.seed, quick=args.quick, from_scratch=args.from_scratch)
    if args.teacher:
        config = teacher_config(config)
    bar = None

    def progress(step: int, total: int, loss: float) -> None:  # one bar per phase: pre-training, mid-training
        nonlocal bar
        if bar is None or bar.total != total or step <= bar.n:
            if bar is not None:
                bar.close()
            bar = tqdm(total=total, initial=step - 1, desc="lab build", unit="step", file=sys.stderr)
        bar.update(step - bar.n)
        bar.set_postfix(loss=f"{loss:.3f}")

    path = build_base(config, out=args.out, progress=progress, rebuild=args.rebuild)
    if bar is not None:
        bar.close()
    report = json.loads((path / "lab_build.json").read_text())
    report["path"] = str(path)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"lab {'teacher' if args.teacher else 'base'} model: {path}")
        print(f"  config {json.dumps(asdict(config))}")
        origin = "shipped with rtransfer, " if report.get("shipped") else ""
        print(f"  {origin}built in {report['seconds']} s, final training loss {report['final_loss']:.3f}")
    return 0
