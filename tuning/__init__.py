"""Ray Tune and Optuna searches."""
