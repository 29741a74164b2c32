"""A chaos runner: a campaign under random SIGKILLs of the daemon, launchers and PostgreSQL.

``scripts/chaos.py`` runs it.  One module a concern: ``schedule`` (the faults, pure and
seeded), ``campaign`` (the jobs and how each must end, pure and seeded), ``apps`` and
``markers`` (what every run writes from inside itself, and reading it back), ``central`` and
``site`` (a round's database and site), ``processes`` and ``faults`` (finding and killing
processes, restarting them), ``remote`` (jobs created through central during the run),
``rounds`` (one round from start to check), ``converge`` (waiting for it to settle),
``checker`` (the checks, pure), ``report`` (tables and JSON), ``runner`` (the command line).
"""
