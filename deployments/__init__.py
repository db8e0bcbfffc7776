"""Deployments: prefect.yaml and the code that registers blocks and deployments."""
