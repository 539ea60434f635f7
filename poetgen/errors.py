"""The exceptions poetgen raises for problems a user can fix.

The CLI turns each into one line on stderr and the exit code below; anything else is a bug.
"""

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130   # README, "Errors and exit codes"
EXIT_FAULTS = 3   # `poetgen check --strict`: the poem was scanned and breaks its form


class PoetgenError(Exception):
    """A problem with the user's input, files or options."""

    exit_code = EXIT_USAGE


class BadInput(PoetgenError, ValueError):
    """A prompt, option or input file that cannot be used."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field   # the option or request field at fault, as its dataclass names it; None: no one field


class Diverged(BadInput):
    """A training run whose loss became NaN or infinite: its weights are garbage and are not saved."""


class BadCorpus(PoetgenError):
    """A corpus file that cannot be read or holds no usable poem."""


class BadModel(PoetgenError):
    """A model bundle that is missing, corrupt, or not compatible with this version."""


class OutputExists(PoetgenError):
    """An output path that exists and would be overwritten without --force."""


class InUse(PoetgenError):
    """A bundle or output file that another poetgen process is writing (it holds the lock)."""


class OutputError(PoetgenError):
    """An output that could not be written (disk full, read-only, quota); the previous file is kept."""
