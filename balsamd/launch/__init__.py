"""The launcher, cut by the kind of process each module runs in.

``leader/`` is the launcher's own process (its loop and its parts, the courier thread, the
store process, the wiring in ``leader/main.py``); ``running/`` starts, watches and stops runs
on this host and on other nodes; ``python/`` is what runs in a warm Python worker or a rank of
a multi-rank Python app.  ``forks.py`` owns the launcher's forks of itself and their order;
``workdirs.py`` moves what runs leave into their working directories.
"""
