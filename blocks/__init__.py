"""Prefect blocks: credentials and connection settings that produce connected clients."""
