"""Prefect flows: compose tasks, decide, report. No client calls."""
