"""Rows of a Hugging Face dataset, for the benchmarks' (and training data's) hub paths. Tests use local files only.

Offline, a hub path fails in seconds (rtransfer.online), not after the libraries' retries; with HF_HUB_OFFLINE set
the libraries are still asked, since they then answer from their local cache, at once.
"""

from typing import Any

from rtransfer import online
from rtransfer.errors import DataError, first_line

LOCAL_HINT = "pass --data-dir with local copies, e.g. --data-dir ../shared/benchmarks"


def hub_rows(name: str, split: str, config: str | None = None) -> list[dict[str, Any]]:
    """Rows of a Hugging Face dataset, for users with a connection (tests use local files only)."""
    check_online(name)
    from datasets import load_dataset  # heavy; only this path needs it

    try:
        return [dict(row) for row in load_dataset(name, config, split=split)]
    except Exception as err:  # network, authentication, renamed dataset: say which and how to avoid it
        raise hub_error(name, err) from err


def check_online(name: str) -> None:
    """Fail now, in one line, when the hub cannot be reached and the user has not declared offline mode."""
    reason = online.hub_offline()
    if reason and not online.offline_variable():
        raise offline_error(name, reason)


def offline_error(name: str, reason: str) -> DataError:
    return DataError(f"cannot load {name}: the Hugging Face hub cannot be reached ({reason}); {LOCAL_HINT}")


def hub_error(name: str, err: Exception) -> DataError:
    """The one-line error of a failed hub load: which dataset, the first line of why, and the way around it."""
    variable = online.offline_variable()
    if variable:  # the libraries looked in their cache only
        return offline_error(name, f"{variable} is set, and the local cache has no copy")
    return DataError(f"could not load {name} from the Hugging Face hub ({first_line(err)}); {LOCAL_HINT}")
