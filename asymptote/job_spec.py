"""What a training run is, and its cache key: a picklable description, with no torch in it.

A flow builds `TrainJob`s and keys them without importing torch (a fully cached call never needs
it); `asymptote.job.run_job` executes one on a worker. The key hashes the code a worker runs: the
closure of `asymptote.job` plus the objective, batches and driver modules the job names.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from asymptote.config import (
    ComputeConfig,
    DataConfig,
    ModelConfig,
    Section,
    StoreConfig,
    TrainConfig,
    key_dict,
    stable_hash,
)
from asymptote.store import Store, layout
from asymptote.versioning import ModuleIndex, code_version

RUNNER = "asymptote.job"
"""The module that executes a job on a worker (its import closure is in every run's key)."""


class TrainJob(Section):
    """A fully resolved training run. `key` is its cache key and names its folder runs/<key>."""

    key: str
    name: str = "run"
    model: ModelConfig
    data: DataConfig
    train: TrainConfig
    data_artifact: str
    """Store-relative path of the prepared data (data/<key>)."""
    init_from: str | None = None
    """Store-relative path of a run or checkpoint whose weights initialise this run (fine-tuning)."""
    objective: dict[str, Any] = Field(default_factory=lambda: {"kind": "ce"})
    """Loss: {"kind": name, ...options}; a name from OBJECTIVES."""
    batches: dict[str, Any] = Field(default_factory=lambda: {"kind": "epochs"})
    """Batch source: {"kind": name, ...options}; a name from BATCHES."""
    driver: dict[str, Any] = Field(default_factory=lambda: {"kind": "schedule"})
    """What sets the learning rate step by step: {"kind": name, ...}; a name from DRIVERS."""
    compute: ComputeConfig = Field(default_factory=ComputeConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    progress_hub: str | None = None
    """Name of the driver's progress actor, if any (set by the launcher)."""
    keep_checkpoints: int = 2

    @property
    def run_rel(self) -> str:
        return layout("run", key=self.key)


# Explicit registries. Entries are "module:function" so that a method's code loads only when used.
OBJECTIVES: dict[str, str] = {
    "ce": "asymptote.job:ce_objective",
    "token_kl": "asymptote.distill:token_kl_objective",
}
BATCHES: dict[str, str] = {
    "epochs": "asymptote.job:epoch_batches",
    "mixture": "asymptote.distill:mixture_batches",
}
DRIVERS: dict[str, str] = {
    "schedule": "asymptote.job:schedule_driver",
    "autolrs": "asymptote.autolrs_driver:autolrs_driver",
}


def job_key(job: TrainJob, index: ModuleIndex | None = None) -> str:
    """Cache key of a run: everything that can change its result, nothing that cannot.

    Data enters through its content-addressed artifact path, teachers and init weights through
    theirs; compute, store and logging settings are left out (volatile), the code version is in.
    """
    body = {
        k: (key_dict(v) if isinstance(v, Section) else v)
        for k, v in job
        if k not in ("key", "name", "compute", "store", "progress_hub", "keep_checkpoints")
    }
    return stable_hash({**body, "code": job_code_version(job, index)})


def job_code_version(job: TrainJob, index: ModuleIndex | None = None) -> str:
    """What a worker runs: this module's closure plus the objective, batches and driver the job names
    (string registries, so not imports)."""
    modules = [
        registry[spec["kind"]].split(":")[0]
        for registry, spec in ((OBJECTIVES, job.objective), (BATCHES, job.batches), (DRIVERS, job.driver))
        if spec.get("kind") in registry
    ]
    return code_version(RUNNER, *modules, index=index)


def make_job(**fields: Any) -> TrainJob:
    """A TrainJob with its key computed from its contents, its model's vocabulary fitted to its data."""
    job = TrainJob(key="pending", **fields)
    vocab = data_vocab(job.store, job.data_artifact)
    if vocab is not None:
        job = job.model_copy(update={"model": fit_vocab(job.model, vocab)})
    return job.model_copy(update={"key": job_key(job)})


def fit_vocab(model: ModelConfig, vocab: int) -> ModelConfig:
    """The data's vocabulary where the config leaves model.vocab_size unset (presets do not set it),
    so a BPE corpus needs no second setting; a clear error where it is set and cannot hold the data."""
    if "vocab_size" not in model.model_fields_set:
        return model.model_copy(update={"vocab_size": vocab})
    if model.vocab_size < vocab:
        raise ValueError(
            f"model.vocab_size={model.vocab_size} is smaller than the data's tokenizer ({vocab} ids); "
            f"set model.vocab_size >= {vocab} or leave it unset to take the tokenizer's"
        )
    return model


_VOCABS: dict[tuple[str, str], int] = {}  # data artifacts never change once committed


def data_vocab(store: StoreConfig, rel: str) -> int | None:
    """The vocabulary of a committed data artifact, or None while it is not in the store."""
    memo = (store.uri, rel)
    if memo not in _VOCABS:
        st = Store(store)
        if not st.has(rel):
            return None
        _VOCABS[memo] = int(st.manifest(rel).meta["vocab_size"])
    return _VOCABS[memo]
