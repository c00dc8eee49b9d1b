"""Reading JSON Lines that users and datasets hand us, with errors that name the file and line."""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rtransfer.errors import DataError


def iter_objects(path: Path, required: tuple[str, ...] = ()) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-empty line, read as a stream (some official files are large); each
    must be a JSON object with the `required` fields."""
    try:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    item = json.loads(line)
                except ValueError as err:
                    raise DataError(f"{path}:{number}: not valid JSON ({err})") from None
                if not isinstance(item, dict):
                    raise DataError(f"{path}:{number}: expected a JSON object")
                missing = [k for k in required if item.get(k) in (None, "")]
                if missing:
                    raise DataError(f"{path}:{number}: missing field(s) {', '.join(missing)}")
                yield number, item
    except (FileNotFoundError, IsADirectoryError):
        raise DataError(f"{path}: file not found") from None
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text ({err.reason})") from None


def read_objects(path: Path, required: tuple[str, ...] = ()) -> list[tuple[int, dict[str, Any]]]:
    """All of `iter_objects`, and an error for a file without any record."""
    out = list(iter_objects(path, required))
    if not out:
        raise DataError(f"{path}: no records")
    return out
