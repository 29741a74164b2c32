"""Python workers: processes that run Python apps' ``run()`` for the launcher.

A zygote (``zygote.py``) forks warm workers (``worker.py``) that run job after job; the
launcher holds a handle on each (``handle.py``) and speaks ``protocol.py`` with it.  Each rank
of a multi-rank Python app runs ``rank.py`` under the MPI launcher.  Both call the app the same
way (``appcall.py``).
"""
