"""Foldflow's shared kernel: settings, topology, observability, resilience and the CLI."""
