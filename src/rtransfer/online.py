"""Whether the Hugging Face hub can be reached, decided once per process and in seconds.

Without a connection the hub libraries retry for 24 s (a dataset) to 49 s (a model) before they fail. Every hub
path of rtransfer asks `hub_offline()` first and fails at once with a line that says what to use instead: a local
folder (`--data-dir`), a local model directory, or the lab base.
"""

import functools
import os
import socket
import threading
from urllib.parse import urlsplit

PROBE_SECONDS = 2.5  # a TCP connection to the hub (or its proxy); name resolution included
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")  # what huggingface_hub reads
TRUE = ("1", "ON", "YES", "TRUE")
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


def hub_offline() -> str | None:
    """Why the hub cannot be reached ("HF_HUB_OFFLINE is set", "huggingface.co:443: Name or service not known",
    ...), or None when it can. The variables are read on every call; the connection is tried once per address."""
    name = offline_variable()
    return f"{name} is set" if name else _unreachable(*_address())


def hub_kernels() -> dict:
    """from_pretrained's kernel setting: the hub's kernels off, unless the user set USE_HUB_KERNELS.

    transformers 5 swaps layers for kernels it downloads from the hub, by default, at load and again at
    `model.train()`. On a GPU node without the hub (HF_HUB_OFFLINE=1, common on clusters) that crashed every training
    run and the engine's loading (measured on an H200, transformers 5.25: "Version 2 of 'kernels-community/rotary' is
    not available in the local cache"); where the hub answers, it runs code fetched at run time whose numerics are not
    the torch layers rtransfer's CPU/GPU agreement was measured on. A user who wants them sets USE_HUB_KERNELS=1
    (transformers' own switch), and then transformers decides."""
    return {} if os.environ.get("USE_HUB_KERNELS", "").strip() else {"use_kernels": False}


def offline_variable() -> str | None:
    """The variable by which the user declared offline mode, if any: the hub libraries then look in their local
    cache only, and fail fast by themselves."""
    return next((v for v in OFFLINE_VARIABLES if os.environ.get(v, "").strip().upper() in TRUE), None)


def _address() -> tuple[str, int]:
    """Where a connection to the hub goes first: the proxy when one is set, else HF_ENDPOINT (huggingface.co)."""
    proxy = next((os.environ[v] for v in PROXY_VARIABLES if os.environ.get(v)), None)
    if proxy:
        url = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    else:
        url = urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    return url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)


@functools.cache
def _unreachable(host: str, port: int) -> str | None:
    # In a thread: socket timeouts do not cover name resolution, which can hang for tens of seconds on its own.
    result: list[str | None] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=PROBE_SECONDS).close()
            result.append(None)
        except OSError as err:
            result.append(f"{host}:{port}: {err.strerror or err}")

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(PROBE_SECONDS)
    return result[0] if result else f"{host}:{port}: no answer in {PROBE_SECONDS:g} s"


def offline_message(model: str, reason: str) -> str:
    return (
        f"cannot load model {model!r}: the Hugging Face hub cannot be reached ({reason}) and its local cache has no "
        "copy; give a local model directory, or lab for the lab base"
    )
