"""The benchmark harness behind ``foldflow bench`` (see README, Benchmarks).

Pure parts (unit-tested): :mod:`bench.stats`, :mod:`bench.figures`, :mod:`bench.results`,
:mod:`bench.lines`, :mod:`bench.readings`, :mod:`bench.report`, :mod:`bench.analysis`,
:mod:`bench.metrics` parsing and :mod:`bench.profile` summaries. Effectful parts:
:mod:`bench.baseline` (raw Kafka), :mod:`bench.services` (subprocesses, /proc),
:mod:`bench.session`, :mod:`bench.driver`, :mod:`bench.watchers`, :mod:`bench.collect`,
and :mod:`bench.run`, the composition root.
"""
