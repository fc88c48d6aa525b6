"""The read side: events folded into PostgreSQL, and the queries over them.

The gateway imports :mod:`projections.queries` and nothing else of this package; the CLI
runs :mod:`projections.projector` and :mod:`projections.rebuild`.
"""
