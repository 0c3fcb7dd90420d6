"""The one exception type users see: a clear message naming the field or file and the fix."""


class TicketscopeError(RuntimeError):
    """A user-facing error (bad config, missing or corrupt file, diverged training, busy run)."""
