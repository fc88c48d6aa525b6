"""The benchmark harness behind ``foldflow bench`` (see README, Benchmarks).

Pure parts (unit-tested): :mod:`foldflow.bench.stats`, :mod:`foldflow.bench.figures`,
:mod:`foldflow.bench.results`, :mod:`foldflow.bench.lines`, :mod:`foldflow.bench.readings`,
:mod:`foldflow.bench.report`, :mod:`foldflow.bench.analysis`, :mod:`foldflow.bench.metrics`
parsing and :mod:`foldflow.bench.profile` summaries. Effectful parts:
:mod:`foldflow.bench.baseline` (raw Kafka), :mod:`foldflow.bench.services` (subprocesses,
/proc), :mod:`foldflow.bench.session`, :mod:`foldflow.bench.driver`,
:mod:`foldflow.bench.watchers`, :mod:`foldflow.bench.collect`, and :mod:`foldflow.bench.run`,
the composition root.
"""
