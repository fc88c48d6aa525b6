"""The read side: events folded into PostgreSQL, and the queries over them.

The gateway imports :mod:`foldflow.projections.queries` and nothing else of this package; the CLI
runs :mod:`foldflow.projections.projector` and :mod:`foldflow.projections.rebuild`.
"""
