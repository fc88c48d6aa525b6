"""The orchestrator's runtime: the Kafka loop around the pure decider
(foldflow.processors.decider)."""
