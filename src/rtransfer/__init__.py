"""rtransfer: does math reasoning transfer? Evaluate, train, probe and report (Huan et al., arXiv 2507.00432)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("rtransfer")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
