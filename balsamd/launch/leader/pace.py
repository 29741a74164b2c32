"""How fast runs go: each app's mean run time, and how many runs end per second.

The mean run time decides whether an app's runs are short (queued on workers, lazy about
files) and how deep their queues are; the rate sizes serial claims, so that a launcher keeps
enough jobs in hand while a claim is on its way.
"""

from __future__ import annotations

from balsamd.launch.leader.policy import followers, short_runs, updated_mean

RATE_WINDOW_SEC = 0.25  # the run rate is measured over at least this


class Pace:
    def __init__(self, now: float) -> None:
        self._mean: dict[str, float] = {}  # app -> moving mean of its run time
        self._short: set[str] = set()  # apps whose runs are known to be short
        self._ended = 0
        self._rate = 0.0
        self._mark = (now, 0)  # (when, runs ended then) the rate is measured from

    def run_ended(self, app: str, elapsed: float | None) -> bool | None:
        """One more run of ``app`` ended, in ``elapsed`` s if measured; returns whether its
        runs are short now when that changed, else None."""
        self._ended += 1
        if elapsed is None:
            return None
        mean = self._mean[app] = updated_mean(self._mean.get(app), elapsed)
        short = short_runs(mean)
        if short == (app in self._short):
            return None
        if short:
            self._short.add(app)
        else:
            self._short.discard(app)
        return short

    def followers(self, app: str) -> int:
        """How many jobs of ``app`` may wait behind one of its runs (``policy.followers``)."""
        return followers(self._mean.get(app))

    def rate(self, now: float) -> float:
        """Runs ending per second, measured anew once RATE_WINDOW_SEC has passed."""
        since, ended = self._mark
        if now - since >= RATE_WINDOW_SEC:
            self._rate = (self._ended - ended) / (now - since)
            self._mark = (now, self._ended)
        return self._rate
