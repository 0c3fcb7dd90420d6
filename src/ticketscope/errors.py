"""The user-facing exceptions: a clear message naming the field or file and the fix."""


class TicketscopeError(RuntimeError):
    """A user-facing error (bad config, missing or corrupt file, diverged training, busy run)."""


class Diverged(TicketscopeError):
    """Training of one run became non-finite: where (round, step) and the value that showed it."""

    def __init__(self, message: str, round: int, step: int, value: float) -> None:
        super().__init__(message)
        self.round, self.step, self.value = round, step, value
