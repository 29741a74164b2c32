"""Runners: how a run starts, is watched and stopped, on this host or on other nodes.

The leader calls a ``Runner`` without knowing how a run happens: the local runner starts
command runs and MPI launches as processes and hands single-rank Python runs to warm workers;
the fleet sends runs placed on other nodes to a node worker there (``nodeworker.py``) and the
rest to a local runner.  What a run executes is decided in ``commands.py`` and ``mpi.py``; the
watchdog kills what a dead launcher left running; ``lazyfiles.py`` keeps short command runs
from making files they never use.
"""
