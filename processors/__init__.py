"""The orchestrator: the pure workflow decider, its state, the faust app and timers."""
