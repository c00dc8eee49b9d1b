"""The one cache root for everything rtransfer downloads or builds: $RTRANSFER_CACHE, else ~/.cache/rtransfer."""

import os
from pathlib import Path


def cache_root() -> Path:
    """Where downloads, built lab models and other derived files live. Never inside the source tree."""
    root = os.environ.get("RTRANSFER_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "rtransfer"


def cache_dir(*parts: str) -> Path:
    """A sub-folder of the cache root, created on first use."""
    path = cache_root().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
