"""Errors a user can cause. The CLI prints them as one line, without a traceback, and exits non-zero."""


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (its type's name when empty): library errors run to many lines,
    ours are one."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


class RtransferError(Exception):
    """Base class of every error that is the user's input, not a bug."""


class DataError(RtransferError):
    """A data file (scores table, records, results JSON) is missing, malformed or inconsistent."""


class UnknownBenchmarkError(RtransferError):
    """A benchmark name that rtransfer does not know."""


class TransferabilityError(RtransferError):
    """The Transferability Index is undefined for the given scores (zero base score, zero math gain, ...)."""


class RunMismatchError(RtransferError):
    """A run directory was started with other settings than the ones asked for now."""


class ModelLoadError(RtransferError):
    """A model or tokenizer cannot be loaded (not there, offline, an unknown architecture)."""
