"""
errors.py: one Python exception class per enum cge_status, all under cge.Error.

Key design decision: the message is cge_errmsg() (the library's detail: which file, which key,
expected vs actual), read on the same OS thread right after the failing call, so it is the
failure's own message even with many threads; the status number and its English name ride along
as attributes. Where a status has an obvious Python counterpart (a bad value, a missing file, a
deadline, memory), the class also derives from it, so `except ValueError` keeps working.
"""
import builtins


class Error(Exception):
    """A cge failure. status: the enum cge_status number; status_name: its English name;
    index: which input failed (None when the call as a whole failed)."""
    status = -1
    status_name = "error"

    def __init__(self, message, status=None, index=None):
        super().__init__(message)
        if status is not None:
            self.status = status
        self.index = index

    @property
    def message(self):
        return self.args[0] if self.args else ""


class ModelNotFoundError(Error, FileNotFoundError):
    status, status_name = 1, "model not found"


class ModelLoadError(Error):
    status, status_name = 2, "model load failed"


class InvalidDimError(Error, ValueError):
    status, status_name = 3, "invalid dimension"


class InvalidValueError(Error, ValueError):
    status, status_name = 4, "invalid value"


class InputTooLongError(Error, ValueError):
    status, status_name = 5, "input too long"


class EmptyInputError(Error, ValueError):
    status, status_name = 6, "empty input"


class BatchError(Error):
    status, status_name = 7, "batch failed"


class FusionError(Error):
    status, status_name = 8, "fusion failed"


class CacheError(Error):
    status, status_name = 9, "cache failure"


class GPUError(Error):
    status, status_name = 10, "GPU failure"


class TokenizeError(Error):
    status, status_name = 11, "tokenization failed"


class IoError(Error, OSError):
    status, status_name = 12, "I/O failure"


class SerializationError(Error, ValueError):
    status, status_name = 13, "malformed data"


class TimeoutError(Error, builtins.TimeoutError):
    status, status_name = 14, "timeout"


class NotInitializedError(Error):
    status, status_name = 15, "not initialized"


class UnsupportedModalityError(Error, ValueError):
    status, status_name = 16, "unsupported modality"


class NoMemoryError(Error, MemoryError):
    status, status_name = 17, "out of memory"


class UnsupportedError(Error):
    status, status_name = 18, "unsupported"


class ClosedError(Error, ValueError):
    """The engine, model or provider was closed."""
    status, status_name = -1, "closed"


BY_STATUS = {cls.status: cls for cls in (
    ModelNotFoundError, ModelLoadError, InvalidDimError, InvalidValueError, InputTooLongError,
    EmptyInputError, BatchError, FusionError, CacheError, GPUError, TokenizeError, IoError,
    SerializationError, TimeoutError, NotInitializedError, UnsupportedModalityError,
    NoMemoryError, UnsupportedError)}

__all__ = ["Error", "ClosedError"] + sorted(c.__name__ for c in BY_STATUS.values())


def make(status, message, index=None):
    """The exception for a status (an unknown, newer status gives the base class)."""
    cls = BY_STATUS.get(status, Error)
    return cls(message, status=status, index=index)
