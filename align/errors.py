"""Errors a user can fix. The CLI prints their message (no traceback) and exits with code 2 (3: training diverged)."""


class AlignError(Exception):
    """Bad input or a refused operation: the message says what and where."""

    exit_code = 2


class ConfigError(AlignError):
    pass


class DataError(AlignError):
    """A problem in a data file, located down to the row and field."""

    def __init__(self, file: str, message: str, row: int | None = None, field: str | None = None):
        self.file, self.row, self.field = str(file), row, field
        where = self.file + (f", row {row}" if row is not None else "") + (f", field '{field}'" if field else "")
        super().__init__(f"{where}: {message}")


class RunError(AlignError):
    """A run directory that cannot be used as asked (exists, incomplete, incompatible)."""


class ModelError(AlignError):
    pass


class TrainingDiverged(AlignError):
    """Training blew up (a non-finite or exploding loss, gradients gone to exactly zero, a runaway KL): the
    run stops, its manifest says `failed`, and the message names the step and what to change. Exit code 3,
    so that a script can tell it from bad input (2)."""

    exit_code = 3
