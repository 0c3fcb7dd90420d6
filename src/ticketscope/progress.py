"""Progress bars (rich) for runs and sweeps; disabled bars cost nothing."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


def _bar(*columns: str) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    extra = {"remaining": TimeRemainingColumn}
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    *(extra[c]() for c in columns))


class RoundProgress:
    """Bars over the rounds of every run of an ensemble and the steps of the training in progress."""

    def __init__(self, enabled: bool, rounds: int, label: str) -> None:
        self.enabled = enabled
        if enabled:
            self.bar = _bar("remaining")
            self.rounds = self.bar.add_task(f"{label} rounds", total=rounds)
            self.steps = self.bar.add_task("steps", total=1)

    def __enter__(self) -> "RoundProgress":
        if self.enabled:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.bar.__exit__(*exc)

    def start(self, what: str, start: int, total: int) -> None:
        if self.enabled:
            self.bar.reset(self.steps, total=total, completed=start, description=f"{what} steps")

    def step(self, step: int) -> None:
        if self.enabled and step % 25 == 0:
            self.bar.update(self.steps, completed=step + 1)

    def end_steps(self, total: int) -> None:
        if self.enabled:
            self.bar.update(self.steps, completed=total)

    def advance(self, rounds: int = 1) -> None:
        if self.enabled:
            self.bar.advance(self.rounds, rounds)


@contextmanager
def point_progress(enabled: bool, total: int, label: str) -> Iterator[Callable[[str, int], None]]:
    """A bar over a sweep's points; the callback advances it by ``n`` points of one status."""
    if not enabled:
        yield lambda status, n: None
        return
    counts: Counter[str] = Counter()
    with _bar() as bar:
        task = bar.add_task(label, total=total)

        def advance(status: str, n: int) -> None:
            if not n:
                return
            counts[status] += n
            done = ", ".join(f"{c} {s}" for s, c in sorted(counts.items()))
            bar.update(task, advance=n, description=f"{label} ({done})")

        yield advance
