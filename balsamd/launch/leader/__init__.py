"""The leader: the launcher's own process, its loop and what the loop decides with.

The loop (``loop.py``) claims jobs from its job source (``source.py``; on the store's host
answered by a fork of the launcher, ``storeproc.py``) through a courier thread
(``courier.py``), places them on its nodes (``resources.py``, the hosts found by
``nodes.py``), hands them to a runner and reports how they went.  It composes small parts,
each with its own state: ``claims.py``, ``reports.py``, ``heartbeat.py``, ``lanes.py``,
``pace.py``, ``stopping.py`` and ``failures.py``; ``policy.py`` holds pure decisions and
``summary.py`` what a launcher reports when it stops.  ``main.py`` wires a launcher for a site.
"""
