"""Campaign reports: throughput, utilization, failures, runtimes and batch-job queueing.

``records`` holds the Structs (what a store or the central database hands over, and what a
report returns); ``series`` the pure functions that turn rows into series; ``window`` the
parsing of times and the choice of bins; ``build`` the ``Reports`` object that a Site and a
central connection both offer as ``.reports``; ``chart`` and ``plot`` draw a report in a
terminal or as a PNG.  Nothing here imports the CLI, so a live view can reuse the series.
"""
