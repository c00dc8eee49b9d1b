"""The installed `rtransfer` command: help, output formats, one-line errors, benchmark names."""

import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rtransfer.benchmarks.names import GROUPS, PAPER_BENCHMARKS, canonical, display, group_of
from rtransfer.errors import UnknownBenchmarkError


def test_console_script_runs_and_errors_are_one_line(tmp_path):
    exe = shutil.which("rtransfer", path=str(Path(sys.executable).parent))
    assert exe, "the rtransfer console script is not installed beside this Python"
    ok = subprocess.run([exe, "ti", "--paper", "--csv"], capture_output=True, text=True, check=True)
    assert ok.stdout.startswith("model,base,method,TI_other,TI_non")
    bad = tmp_path / "bad.csv"
    bad.write_text("model,base,MATH500\nT,B,12\n")
    failed = subprocess.run([exe, "ti", "--scores", str(bad)], capture_output=True, text=True)
    assert failed.returncode == 2
    assert failed.stderr.strip().count("\n") == 0 and "Traceback" not in failed.stderr
    assert "base 'B' of 'T' has no row" in failed.stderr


def test_help_lists_ti(cli, capsys):
    with pytest.raises(SystemExit) as exc:
        cli("--help")
    assert exc.value.code == 0
    assert "ti" in capsys.readouterr().out


def test_csv_and_latex_outputs(cli):
    _, out, _ = cli("ti", "--paper", "--csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 18 and float(rows[0]["TI_other"]) == pytest.approx(22.5, abs=0.05)
    _, out, _ = cli("ti", "--paper", "--latex")
    assert out.startswith(r"\begin{table}") and r"\toprule" in out
    assert r"TI\_other" in out and r"$\sigma$ pooled" in out and " -89.7 " in out


def test_v1_on_paper_scores_names_the_undefined_rows(cli):
    code, out, err = cli("ti", "--paper", "--index", "v1", "--json")
    assert code == 0
    rows = {r["model"]: r for r in json.loads(out)}
    assert rows["Llama3.1-8B-SimpleRL"]["TI_other"] is None
    assert "scores 0 on aime24, aime25" in rows["Llama3.1-8B-SimpleRL"]["error"]
    assert "Llama3.1-8B-SimpleRL: v1 is undefined" in err
    assert "reported_TI_other" not in rows["SimpleRL-7B"]  # the paper reports v2 only


def test_no_inputs_is_an_error(cli):
    code, _, err = cli("ti")
    assert code == 2 and "no inputs" in err


def test_benchmark_names_accept_display_spellings():
    assert len(PAPER_BENCHMARKS) == 12
    assert canonical("GPQA-Diamond") == "gpqa_diamond" and canonical("MC-TACO") == "mctaco"
    assert canonical("MATH500") == canonical("math-500") == "math500"
    assert display("headqa") == "HeadQA" and group_of("IFEval") == "non"
    assert [sum(group_of(b) == g for b in PAPER_BENCHMARKS) for g in GROUPS] == [4, 4, 4]
    with pytest.raises(UnknownBenchmarkError, match=r"unknown benchmark 'mmlu'.*known: acpbench"):
        canonical("mmlu")
