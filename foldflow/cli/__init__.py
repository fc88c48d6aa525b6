"""The ``foldflow`` command line; :mod:`foldflow.cli.main` registers each sub-command."""
