"""Rows of a Hugging Face dataset, for the benchmarks' (and training data's) hub paths. Tests use local files only."""

from typing import Any

from rtransfer.errors import DataError, first_line


def hub_rows(name: str, split: str, config: str | None = None) -> list[dict[str, Any]]:
    """Rows of a Hugging Face dataset, for users with a connection (tests use local files only)."""
    from datasets import load_dataset  # heavy; only this path needs it

    try:
        return [dict(row) for row in load_dataset(name, config, split=split)]
    except Exception as err:  # network, authentication, renamed dataset: say which and how to avoid it
        raise hub_error(name, err) from err


def hub_error(name: str, err: Exception) -> DataError:
    """The one-line error of a failed hub load: which dataset, the first line of why, and the way around it."""
    return DataError(f"could not load {name} from the Hugging Face hub ({first_line(err)}); pass --data-dir instead")
