"""The loader template (rtransfer.benchmarks.loading): hub or local, one-line errors naming where, unique ids, some
documents; and every registered benchmark loads through it, with the documents it always had."""

import json
import os
from pathlib import Path
from typing import Any

import pytest

from helpers import PAIRS, SUM, TOP_K, write_gpqa, write_livecodebench
from rtransfer.benchmarks import hub
from rtransfer.benchmarks.base import Doc
from rtransfer.benchmarks.loading import Rows, RowTask, jsonl_rows, reading
from rtransfer.benchmarks.names import LAB_BENCHMARKS
from rtransfer.benchmarks.registry import IMPLEMENTED, get_task
from rtransfer.errors import DataError

SHARED = Path(os.environ.get("RTRANSFER_SHARED", Path(__file__).resolve().parents[2] / "shared"))


class Toy(RowTask):
    """A benchmark of the smallest kind: one JSON Lines file, a document per line, or two with `pair`."""

    name = "toy"
    group = "other"
    hf_dataset = "someone/toy"
    hf_config = "main"
    data_folder = "toy"

    def local_rows(self, folder: Path) -> Rows:
        return jsonl_rows(folder / "test.jsonl", ("id",))

    def to_doc(self, row: dict[str, Any], where: str, seed: int) -> Doc | list[Doc]:
        if row.get("bad"):
            raise DataError(f"{where}: a bad row")
        doc = Doc(id=str(row["id"]), data={"text": row["text"], "seed": seed})
        return [doc, Doc(id=f"{doc.id}b", data=doc.data)] if row.get("pair") else doc


def write_toy(root: Path, *rows: dict[str, Any] | str) -> Path:
    (root / "toy").mkdir(parents=True, exist_ok=True)
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    (root / "toy" / "test.jsonl").write_text("\n".join(lines) + "\n")
    return root / "toy" / "test.jsonl"


def test_rows_become_documents_in_order(tmp_path):
    write_toy(tmp_path, {"id": 2, "text": "b"}, {"id": 1, "text": "a", "pair": True})
    docs = Toy().load(tmp_path, seed=3)
    assert [d.id for d in docs] == ["2", "1", "1b"]
    assert docs[0].data == {"text": "b", "seed": 3}


def test_a_duplicate_id_names_the_file_and_line(tmp_path):
    path = write_toy(tmp_path, {"id": 1, "text": "a"}, {"id": 2, "text": "b"}, {"id": 1, "text": "c"})
    with pytest.raises(DataError) as err:
        Toy().load(tmp_path)
    assert str(err.value) == f"{path}:3: duplicate id '1'"
    write_toy(tmp_path, {"id": "1b", "text": "a"}, {"id": 1, "text": "b", "pair": True})  # from a row's second doc
    with pytest.raises(DataError, match=r"test\.jsonl:2: duplicate id '1b'$"):
        Toy().load(tmp_path)


def test_no_documents_is_an_error(tmp_path):
    class Nothing(Toy):
        def to_doc(self, row: dict[str, Any], where: str, seed: int) -> list[Doc]:
            return []

    write_toy(tmp_path, {"id": 1, "text": "a"})
    with pytest.raises(DataError) as err:
        Nothing().load(tmp_path)
    assert str(err.value) == f"{tmp_path / 'toy'}: no toy documents"
    with pytest.raises(DataError, match=r"test\.jsonl: no records"):  # an empty file says so itself
        write_toy(tmp_path, "")
        Toy().load(tmp_path)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"id": 1}, r":2: malformed \(KeyError: 'text'\)$"),  # what the row's reader did not check
        ({"id": 1, "text": "a", "bad": True}, r":2: a bad row$"),  # what it did
        ("{oops", r":2: not valid JSON"),
        ({"text": "a"}, r":2: missing field\(s\) id$"),
    ],
)
def test_a_bad_row_names_where_it_is(tmp_path, row, message):
    path = write_toy(tmp_path, {"id": 0, "text": "fine"}, row)
    with pytest.raises(DataError, match=message) as err:
        Toy().load(tmp_path)
    assert str(err.value).startswith(f"{path}:2: ") and "\n" not in str(err.value)


def test_missing_data_names_the_folder(tmp_path):
    with pytest.raises(DataError, match="no toy data here"):
        Toy().load(tmp_path)


def test_without_a_data_dir_the_hub_is_read(monkeypatch):
    calls = []

    def rows(name: str, split: str, config: str | None = None) -> list[dict[str, Any]]:
        calls.append((name, split, config))
        return [{"id": 1, "text": "a"}, {"text": "b"}]

    monkeypatch.setattr(hub, "hub_rows", rows)
    with pytest.raises(DataError) as err:
        Toy().load(None)
    assert calls == [("someone/toy", "test", "main")]
    assert str(err.value) == "someone/toy:main row 2: malformed (KeyError: 'id')"
    monkeypatch.setattr(hub, "hub_rows", lambda *args: [])
    with pytest.raises(DataError, match=r"^someone/toy: no toy documents$"):
        Toy().load(None)


def test_reading_maps_file_errors_to_one_line(tmp_path):
    path = tmp_path / "x.json"
    with (
        pytest.raises(DataError, match=r"x\.json: file not found \(put it here\)$"),
        reading(path, "JSON", " (put it here)"),
    ):
        path.read_text()
    path.write_text("{not json\n")
    with pytest.raises(DataError) as err, reading(path, "a JSON file"):
        json.loads(path.read_text())
    assert str(err.value).startswith(f"{path}: not a JSON file (JSONDecodeError: ") and "\n" not in str(err.value)


# --- every registered benchmark -----------------------------------------------------------------------------------
BENCHMARKS = sorted(name for name in IMPLEMENTED if name not in LAB_BENCHMARKS)

# (benchmark, documents, first id, last id) of shared/benchmarks, as loaded before the template existed.
SHARED_DOCS = [
    ("math500", 500, "test/precalculus/807.json", "test/geometry/615.json"),
    ("aime24", 30, "60", "89"),
    ("aime25", 30, "2025-I-1", "2025-II-15"),
    ("olympiadbench", 675, "1606", "3102"),
    ("acpbench", 900, "app/6394704477471691447", "val/-6271366474604053588"),
    ("headqa", 2742, "Cuaderno_2016_1_B/1", "Cuaderno_2017_1_Q/235"),
    ("mctaco", 9442, "0", "9441"),
    ("ifeval", 541, "1000", "3757"),
    ("coqa", 12, "3dr23u6we5exclen4th8uq9rb42tel/1", "3dr23u6we5exclen4th8uq9rb42tel/12"),
    ("halueval", 30000, "qa/0", "summarization/9999"),
]


@pytest.mark.parametrize("name", BENCHMARKS)
def test_every_benchmark_loads_through_the_template(name):
    assert isinstance(get_task(name), RowTask)


@pytest.mark.parametrize(("name", "n", "first", "last"), SHARED_DOCS)
def test_shared_data_loads_as_before(name, n, first, last):
    docs = get_task(name).load(SHARED / "benchmarks")
    assert (len(docs), docs[0].id, docs[-1].id) == (n, first, last)
    assert len({d.id for d in docs}) == n


def test_generated_data_loads_as_before(tmp_path):
    """GPQA and LiveCodeBench have no data in shared/ (gated; large): the tests' own files."""
    gpqa = get_task("gpqa_diamond").load(write_gpqa(tmp_path / "g"), seed=0)
    assert [(d.id, d.data["answer"]) for d in gpqa] == [
        ("recTEST01", "A"), ("recT02", "D"), ("recTEST03", "C"), ("recTEST04", "B")
    ]  # fmt: skip
    code = get_task("livecodebench").load(write_livecodebench(tmp_path / "l", [SUM, TOP_K, PAIRS]))
    assert [d.id for d in code] == ["abc900_a", "3999", "4000"]


def test_shared_benchmarks_cover_the_registry():
    assert {name for name, *_ in SHARED_DOCS} | {"gpqa_diamond", "livecodebench"} == set(BENCHMARKS)
