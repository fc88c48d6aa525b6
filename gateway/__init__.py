"""The REST gateway: writes become commands on Kafka, reads come from projections.

``foldflow.gateway.app.create_app`` is the composition root;
``foldflow.gateway.keys.create_api_key`` makes API keys. This package imports nothing heavy
at import time, so the CLI can use
``foldflow.gateway.keys`` without loading FastAPI.
"""
