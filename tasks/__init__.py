"""Prefect tasks: one procedure step each, named by its step ID; retries and caching live here."""
