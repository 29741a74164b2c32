"""Helpers shared by the scheduler tests: recorded scheduler output and scripted replies."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from balsamd.sched.base import Completed

SAMPLES = Path(__file__).parent / "samples"


def sample(name: str) -> str:
    """A scheduler's real output, as recorded in ``samples/``."""
    return (SAMPLES / name).read_text()


class Replies:
    """A ``run`` that answers from a list and records the argv it was given."""

    def __init__(self, *replies: Completed) -> None:
        self.replies = list(replies)
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str]) -> Completed:
        self.calls.append(list(argv))
        return self.replies.pop(0)
