"""Errors a user can cause. The CLI prints them as one line, without a traceback, and exits non-zero."""


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
