"""The runtime layer (importable as asymptote.infra): launching Ray jobs, the cluster session, remote
calls, Prefect result storage and locks, progress, settings and deployments plumbing.

Importing it sets nothing: the Prefect and Ray settings are applied where a session starts
(`asymptote.infra.settings.apply`).
"""
