"""The ``snnbench`` command line (:mod:`snnbench.cli.main`), ``MLproject`` generation and the
commands that run other commands (``report``, ``reproduce``)."""
