"""Storage, cluster and deployment plumbing (importable as asymptote.infra)."""
