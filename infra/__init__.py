"""Storage, cluster and deployment plumbing (importable as asymptote.infra).

Importing it applies the Prefect and Ray settings (infra/settings.py) before either is imported.
"""

from asymptote.infra import settings

settings.apply()
