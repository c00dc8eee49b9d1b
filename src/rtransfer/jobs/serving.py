"""A job's model through the server [eval.serve] starts for it (engines/serve.py): started before the job's
first request, stopped when it ends (or fails), its log in DIR/logs/serve-<model>.log."""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from rtransfer.engines.factory import EngineSpec
from rtransfer.engines.serve import ServeSpec, served
from rtransfer.jobs import say


@contextmanager
def through_server(serve: ServeSpec | None, engine: EngineSpec, name: str, logs: str) -> Iterator[EngineSpec]:
    """`engine` as it is without a server to start; else the engine of the started server."""
    if serve is None:
        yield engine
        return
    log = Path(logs) / f"serve-{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    say(f"  {name}: starting a server ({log})")
    with served(serve, engine.model, log) as url:
        say(f"  {name}: server answers at {url}")
        yield replace(engine, engine="openai", base_urls=(url,))
    say(f"  {name}: server stopped")
