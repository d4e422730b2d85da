"""One AutoLRS training run as a Train job (the AutoLRS driver sets every LR); its config is pure
(asymptote.autolrs_config).

Shared by the AutoLRS flow and the Ray Tune search that runs AutoLRS inside every trial.
"""

from __future__ import annotations

from asymptote.autolrs_config import AutoLRSFlowConfig
from asymptote.job_spec import TrainJob, make_job
from asymptote.store import Store


def autolrs_job(config: AutoLRSFlowConfig, data_rel: str, hub: str | None = None) -> TrainJob:
    return make_job(
        name=config.name,
        model=config.model,
        data=config.data,
        train=config.train,
        data_artifact=data_rel,
        driver=config.autolrs.model_dump(),
        compute=config.compute,
        store=Store(config.store).cfg,
        progress_hub=hub,
    )
