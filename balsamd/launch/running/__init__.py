"""Runners: how a run starts, is watched and stopped, on this host or on other nodes.

The leader calls a ``Runner`` (``protocol.py``) without knowing how a run happens.  The local
runner (``local.py``) starts command runs and MPI launches as processes (``processes.py``) and
hands single-rank Python runs to warm workers (``workers.py``); the fleet (``fleet.py``) sends
runs placed on other nodes to a node worker there (``nodeworker.py``, speaking
``nodeproto.py``) and the rest to a local runner.  What a run executes is decided in
``commands.py`` and ``mpi.py``; the watchdog kills what a dead launcher left running;
``lazyfiles.py`` keeps short command runs from making files they never use.
"""
