"""winnodes: the library the Prefect tasks stand on (no Prefect imports below this package)."""
