"""Typed, validated, serialisable configs: one per component, a docstring per field.

Fields that cannot change a result (where artifacts live, how many workers, how often to log) are
marked `volatile`; they are left out of cache keys so changing them never invalidates a step.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from asymptote.presets import preset_values
from asymptote.redact import MASK, redact, redact_text
from asymptote.refs import DataRef, RunRef
from asymptote.schedules import SCHEDULES


def volatile(default: Any = None, **kw) -> Any:
    """A field that does not affect results; excluded from cache keys. Takes Field's keywords
    (`default_factory` included)."""
    extra = kw.pop("json_schema_extra", {}) | {"volatile": True}
    if "default_factory" in kw:
        return Field(json_schema_extra=extra, **kw)
    return Field(default, json_schema_extra=extra, **kw)


def known_names(values: list[str], allowed, what: str, allow_empty: bool = True) -> list[str]:
    """Validator body for a list of names drawn from a registry: unknown ones name what is allowed."""
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; allowed: {', '.join(allowed)}")
    if not values and not allow_empty:
        raise ValueError(f"no {what} given; name at least one of: {', '.join(allowed)}")
    return values


class Section(BaseModel):
    """Base for every config section: unknown fields are errors, every field is documented."""

    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, use_attribute_docstrings=True, frozen=False
    )


class ModelConfig(Section):
    """Decoder shape. Start from a named preset (`preset: baby`) and override single fields."""

    preset: str | None = None
    """Name of the size preset these values started from (see `asymptote presets`)."""
    vocab_size: int = Field(256, ge=2)
    """Vocabulary size; 256 for the byte tokenizer."""
    n_layer: int = Field(4, ge=1)
    """Number of transformer blocks."""
    n_head: int = Field(4, ge=1)
    """Attention heads."""
    n_kv_head: int | None = Field(None, ge=1)
    """Key/value heads for grouped-query attention; None means n_head (plain multi-head)."""
    d_model: int = Field(128, ge=2)
    """Residual stream width."""
    d_ff: int = Field(344, ge=1)
    """SwiGLU hidden width."""
    block_size: int = Field(64, ge=2)
    """Context length in tokens."""
    rope_theta: float = Field(10000.0, gt=0)
    """RoPE base frequency."""
    norm_eps: float = Field(1e-5, gt=0)
    """RMSNorm epsilon."""
    dropout: float = Field(0.0, ge=0, lt=1)
    """Dropout on residual branches and attention (0 in the paper's recipe)."""

    @model_validator(mode="before")
    @classmethod
    def _expand_preset(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        if data.get("preset"):
            data = preset_values(data["preset"]) | {k: v for k, v in data.items() if v is not None}
        if data.get("n_kv_head") is None:
            data = data | {"n_kv_head": data.get("n_head", 4)}
        return data

    @model_validator(mode="after")
    def _check_shape(self) -> "ModelConfig":
        if self.d_model % self.n_head:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_head={self.n_head}")
        if self.n_head % self.n_kv_head:
            raise ValueError(f"n_head={self.n_head} must be a multiple of n_kv_head={self.n_kv_head}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim=d_model/n_head={self.head_dim} must be even for RoPE")
        return self

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head


class DataConfig(Section):
    """Where the text comes from and how it is tokenised and split."""

    source: str = "builtin:python-docs"
    """A file, a folder or a glob of one format (.txt; .jsonl or .json, optionally .gz/.zst; .parquet),
    local or an fsspec URI (s3://bucket/prefix/*.jsonl.zst). `builtin:python-docs` is the Python
    Language Reference text that ships inside every CPython (pydoc_data), ~466 KB."""
    text_field: str = "text"
    """Field (jsonl/json) or column (parquet) holding each document's text."""
    tokenizer: str = "byte"
    """`byte` (UTF-8 bytes as ids 0..255), `bpe` (a byte-level BPE of vocab_size ids trained on a
    sample of the training split, cached in the store), or the path/URI of a tokenizer.json."""
    vocab_size: int = Field(8192, ge=257, le=1 << 32)
    """For tokenizer=bpe: the vocabulary size to train (the model's model.vocab_size must hold it)."""
    tokenizer_sample_bytes: int = Field(32_000_000, ge=1000)
    """For tokenizer=bpe: bytes of training-split text the BPE is trained on (spread over the files)."""
    token_dtype: Literal["auto", "uint8", "uint16", "uint32"] = "auto"
    """Integer type of the token shards; auto is the smallest that holds the vocabulary."""
    val_fraction: float = Field(0.1, gt=0, lt=1)
    """Fraction held out for validation (every choice is made on it): documents chosen by a hash of
    their text, or for a single text the part after the training text, as nanoGPT does."""
    test_fraction: float = Field(0.05, ge=0, lt=1)
    """Fraction held out for test (every reported figure): documents by hash, or the last part of a
    single text. 0 keeps nanoGPT's protocol (the last val_fraction is validation)."""
    max_train_tokens: int | None = Field(None, ge=1)
    """Token budget D: use only the first D training tokens (None: all of them)."""
    tokenize_cpus_per_piece: float = volatile(2.0, gt=0)
    """CPUs each tokenisation task (one input file) reserves, and the encoder threads it runs: a node
    runs CPUs / this many at once. Each task is a Python worker of ~250 MB whose encoder already spreads
    a batch over this many cores, so 2 halves the workers (and the memory) of one per CPU; 1 overlaps
    more decompression and JSON parsing for speed, at one more worker's memory per two CPUs."""
    tokenize_task_bytes: int = volatile(32 * 2**20, ge=0)
    """Input bytes (as stored) one tokenisation task works through: consecutive files are grouped up to
    about this much per task, so a corpus of many small files does not pay a worker's start (~2 s on
    2 cores) per file. Every file still commits its own marker, so a killed job resumes per file.
    There are at least as many tasks as the cluster runs at once. 0: one file per task."""
    tokenize_in_process_max_bytes: int = volatile(16 * 2**20, ge=0)
    """A corpus whose files total at most this many bytes (as stored) is tokenised in the calling
    process, where a Ray Data job would cost more than the work: its workers and actors import Ray Data
    and pandas, several CPU-seconds each. Both paths write the same pieces and shards; a larger corpus
    runs on Ray Data across the cluster. 0: always Ray Data."""
    tokenize_batch_chars: int = volatile(1 << 20, ge=1024)
    """Characters of documents encoded at once by a tokenisation task: its working memory is a few
    times this (the encoder's output for the batch), whatever the corpus size."""

    @field_validator("tokenizer")
    @classmethod
    def _known_tokenizer(cls, v: str) -> str:
        if v not in ("byte", "bpe") and not v.endswith(".json"):
            raise ValueError("allowed: byte, bpe, or the path/URI of a tokenizer.json")
        return v

    @model_validator(mode="after")
    def _fractions_leave_training(self) -> "DataConfig":
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError(
                f"data.val_fraction={self.val_fraction} + data.test_fraction={self.test_fraction} "
                "must stay below 1 so that some text is left for training"
            )
        return self


class TrainConfig(Section):
    """Optimisation: AdamW, warmup then a decay schedule, fixed data repeated for several epochs."""

    lr: float = Field(1e-3, gt=0, le=10)
    """Peak learning rate."""
    min_lr_ratio: float = Field(0.0, ge=0, le=1)
    """Floor of the decay as a fraction of lr (0, as the paper)."""
    schedule: str = "cosine"
    """Learning-rate schedule: a name from the schedule registry (cosine, linear, constant, replay)."""
    schedule_file: str | None = None
    """For schedule=replay: URI of a schedule JSON (an AutoLRS artifact) to replay step by step."""
    warmup_steps: int = Field(100, ge=0)
    """Linear warmup steps."""
    weight_decay: float = Field(0.1, ge=0)
    """Decoupled AdamW weight decay on matrices (norms, embeddings and biases are never decayed)."""
    beta1: float = Field(0.9, ge=0, lt=1)
    """AdamW beta1."""
    beta2: float = Field(0.95, ge=0, lt=1)
    """AdamW beta2."""
    grad_clip: float = Field(1.0, ge=0)
    """Clip the global gradient norm to this (0 disables)."""
    batch_size: int = Field(12, ge=1)
    """Global batch size in sequences (split across workers)."""
    epochs: float = Field(1.0, gt=0)
    """Passes over the training tokens; sets the step count unless max_steps is given."""
    max_steps: int | None = Field(None, ge=1)
    """Exact number of optimiser steps (overrides epochs)."""
    train_seed: int = 0
    """Seed for initialisation and dropout."""
    data_seed: int = 0
    """Seed for data order: each epoch's order is a function of (data_seed, epoch) only."""
    eval_every: int = Field(250, ge=1)
    """Evaluate on the validation split every this many steps (and at the end)."""
    eval_windows: int = Field(256, ge=1)
    """Validation windows per interval evaluation, evenly spaced over the split (the final
    evaluation always uses the whole split)."""
    precision: Literal["auto", "float32", "bfloat16"] = "auto"
    """Autocast dtype: auto is bfloat16 on CUDA and float32 on CPU."""
    log_every: int = volatile(25, ge=1)
    """Report metrics every this many steps."""
    checkpoint_every: int = volatile(500, ge=1)
    """Save a resumable checkpoint every this many steps (and at the end)."""

    @field_validator("schedule")
    @classmethod
    def _known_schedule(cls, v: str) -> str:
        if v not in SCHEDULES:
            raise ValueError(f"unknown schedule {v!r}; allowed: {', '.join(sorted(SCHEDULES))}")
        return v

    @model_validator(mode="after")
    def _replay_needs_file(self) -> "TrainConfig":
        if self.schedule == "replay" and not self.schedule_file:
            raise ValueError("schedule=replay needs schedule_file (the URI of a schedule JSON)")
        return self


class ComputeConfig(Section):
    """Where and how a run executes. Nothing here changes results, so nothing here is in a cache key."""

    num_workers: int = volatile(1, ge=1)
    """Data-parallel workers (DDP: gloo on CPU, NCCL on CUDA)."""
    launcher: Literal["auto", "ray_train", "ray_task"] = volatile("auto")
    """auto: a multi-worker Ray Train job for num_workers > 1, else a Ray task running the same
    train function through Ray Train's local mode (skips ~15 s of worker-group start per run)."""
    cpus_per_worker: float = volatile(1.0, gt=0)
    """CPUs reserved per worker; also its torch thread count."""
    use_gpu: Literal["auto", True, False] = volatile("auto")
    """Place workers on GPUs: auto uses one GPU per worker when the cluster has GPUs."""
    compile: bool = volatile(False)
    """torch.compile the training forward/backward (fuses norms, RoPE and SwiGLU on GPUs; costs a
    compile of tens of seconds at start). Evaluation and checkpoints use the uncompiled module."""
    micro_batch_size: int | None = volatile(None, ge=1)
    """Sequences per forward pass on a worker (gradient accumulation); None: the whole per-worker batch."""
    teacher_cache_mb: float = volatile(1024.0, ge=0)
    """CPU memory (MiB per worker) a distillation student may spend keeping its teachers' outputs on
    windows it will see again (synthetic windows recur every epoch); 0 recomputes them every step."""
    max_failures: int = volatile(2, ge=0)
    """Worker failures tolerated; each restart resumes from the latest checkpoint."""
    ray_address: str | None = volatile(None)
    """Ray cluster to join (else RAY_ADDRESS; else a local Ray is started in-process)."""


def from_env(variable: str, default: Any = None, kind: Callable[[str], Any] = str) -> Callable[[], Any]:
    """A field's default_factory: the field's default, overridden by an environment variable where set.
    Every ASYMPTOTE_* setting is a config field declared this way; the variable is read when a config
    is built, never at import."""

    def factory() -> Any:
        value = os.environ.get(variable)
        return default if value in (None, "") else kind(value)

    return factory


def default_cache() -> str:
    """The per-machine cache folder: $ASYMPTOTE_CACHE, else ~/.cache/asymptote."""
    return from_env("ASYMPTOTE_CACHE", str(Path.home() / ".cache" / "asymptote"))()


def credentials_hidden(url: str | None) -> str | None:
    """A URL field's JSON form: its credentials as ***. The real URL lives only in the config object in
    memory, so no JSON dump (Prefect's stored flow parameters, the store's files, reports) holds it."""
    return None if url is None else redact_text(url)


def credentials_restored(url: str | None, variable: str) -> str | None:
    """A URL field read back from such a dump (a deployment's parameters on a worker): the real URL,
    taken from $variable where this process runs, which must name the same server."""
    if url is None or MASK not in url or redact_text(url) != url:
        return url  # a real URL (with or without credentials), or none
    real = os.environ.get(variable)
    if not real or redact_text(real) != url:
        raise ValueError(
            f"the credentials of this URL were hidden when the config was stored; set {variable} to the "
            "real URL where the flow runs (or leave the field out to take it from there)"
        )
    return real


class TrackingConfig(Section):
    """MLflow run tracking, off unless a server is named (here or by $MLFLOW_TRACKING_URI) or `local` is
    set. Each training run becomes an MLflow run (params, metric history, tags, links to its store
    artifacts), nested under a run for the flow that trained it."""

    uri: str | None = volatile(default_factory=from_env("MLFLOW_TRACKING_URI"))
    """Tracking server (http://host:5000) or store (sqlite:///path.db); default $MLFLOW_TRACKING_URI."""
    local: bool = volatile(False)
    """Without a uri: track into a SQLite file beside the artifact store (what `asymptote ui` shows)."""
    experiment: str = volatile(default_factory=from_env("MLFLOW_EXPERIMENT_NAME", "asymptote"))
    """MLflow experiment the runs go to; default $MLFLOW_EXPERIMENT_NAME, else asymptote."""
    timeout_s: float = volatile(5.0, gt=0)
    """Longest a tracking call may wait for the server; an unreachable server is skipped, never waited on."""
    parent_run_id: str | None = volatile(None)
    """MLflow run the training runs nest under; set by the runtime (a flow's run), not by users."""

    @field_serializer("uri", when_used="json")
    def _without_credentials(self, url: str | None) -> str | None:
        return credentials_hidden(url)

    @field_validator("uri")
    @classmethod
    def _real_uri(cls, url: str | None) -> str | None:
        return credentials_restored(url, "MLFLOW_TRACKING_URI")


class StoreConfig(Section):
    """The artifact store: a local folder or s3:// (credentials from the standard AWS sources).
    Each field whose doc names an ASYMPTOTE_* variable takes that variable's value as its default."""

    uri: str = volatile(default_factory=from_env("ASYMPTOTE_STORE", "./artifacts"))
    """Root of the store: a local folder (default ./artifacts, or $ASYMPTOTE_STORE) or s3://bucket/prefix."""
    endpoint_url: str | None = volatile(None)
    """Endpoint of an S3-compatible server (else AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL or AWS itself)."""
    region: str | None = volatile(None)
    """AWS region (else the standard AWS sources)."""
    profile: str | None = volatile(None)
    """AWS profile name (else the standard AWS sources)."""
    redis_url: str | None = volatile(default_factory=from_env("ASYMPTOTE_REDIS_URL"))
    """redis://[:password@]host:port for cross-machine cache locks (default $ASYMPTOTE_REDIS_URL; unset: a
    file lock). A password is never written out (Prefect's parameters, reports, the store show ***); a
    deployment's worker takes the real URL from its own $ASYMPTOTE_REDIS_URL."""
    lock_lease_s: float = volatile(default_factory=from_env("ASYMPTOTE_LOCK_LEASE_S", 60.0, float), gt=0)
    """With Redis locks: how long a crashed holder blocks its step, in seconds (a live holder renews its
    lease); default 60, or $ASYMPTOTE_LOCK_LEASE_S."""
    cache: str = volatile(default_factory=default_cache)
    """Per-machine cache: downloaded artifacts, lock files of a remote store (default ~/.cache/asymptote,
    or $ASYMPTOTE_CACHE)."""
    tracking: TrackingConfig = volatile(default_factory=TrackingConfig)
    """Where runs are tracked besides the store: an MLflow server, off by default (see TrackingConfig)."""

    @field_serializer("redis_url", "endpoint_url", when_used="json")
    def _without_credentials(self, url: str | None) -> str | None:
        return credentials_hidden(url)

    @field_validator("redis_url")
    @classmethod
    def _real_redis_url(cls, url: str | None) -> str | None:
        return credentials_restored(url, "ASYMPTOTE_REDIS_URL")


def tracking_uri(store: StoreConfig) -> str | None:
    """Where runs are tracked (an MLflow server or store), or None when tracking is off."""
    if store.tracking.uri:
        return store.tracking.uri
    return f"sqlite:///{local_tracking_db(store)}" if store.tracking.local else None


def local_tracking_db(store: StoreConfig) -> Path:
    """The SQLite tracking store of `tracking.local` and `asymptote ui`: beside a local artifact store
    (<store>/tracking/mlflow.db), or in the cache folder for a remote one."""
    protocol = store.uri.split("://", 1)[0] if "://" in store.uri else "file"
    root = Path(store.uri.removeprefix("file://")) if protocol in ("file", "local") else Path(store.cache)
    return root.resolve() / "tracking" / "mlflow.db"


class PretrainConfig(Section):
    """One pre-training run: data -> train -> evaluate."""

    name: str = volatile("pretrain")
    """Human-readable label shown in reports and progress."""
    model: ModelConfig = Field(default_factory=lambda: ModelConfig(preset="baby"))
    """Model shape."""
    data: DataConfig = Field(default_factory=DataConfig)
    """Corpus and tokenisation."""
    train: TrainConfig = Field(default_factory=TrainConfig)
    """Optimisation."""
    compute: ComputeConfig = volatile(default_factory=ComputeConfig)
    """Execution (never part of a cache key)."""
    store: StoreConfig = volatile(default_factory=StoreConfig)
    """Artifact store (never part of a cache key)."""


class PretrainResult(BaseModel):
    """What `pretrain` returns: references into the store and the headline metrics."""

    flow_run_id: str | None
    data: DataRef
    run: RunRef
    metrics: dict[str, float] = Field(default_factory=dict)
    report_uri: str
    step_states: dict[str, str] = Field(default_factory=dict)
    """Final Prefect state of each step: Completed (computed now) or Cached (reused)."""


# ----------------------------------------------------------------------------- hashing


def _is_volatile(field) -> bool:
    extra = field.json_schema_extra
    return isinstance(extra, dict) and extra.get("volatile", False)


def key_dict(cfg: BaseModel) -> dict[str, Any]:
    """The config as a dict without volatile fields: exactly what may change a result."""
    out: dict[str, Any] = {}
    for name, field in type(cfg).model_fields.items():
        if _is_volatile(field):
            continue
        value = getattr(cfg, name)
        out[name] = key_dict(value) if isinstance(value, BaseModel) else value
    return out


def stable_hash(obj: Any, n: int = 16) -> str:
    """sha256 of canonical JSON; the same on every machine and Python version."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:n]


# ----------------------------------------------------------------------------- errors


class ConfigError(ValueError):
    """A config value is wrong; the message names the field, the value and what is allowed."""


def explain(err: ValidationError, cls: type[BaseModel] | None = None) -> ConfigError:
    lines = []
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"]) or "<root>"
        value = redact(e.get("input"))  # an error message is printed and logged: no password in it
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown field" + _suggest(cls, e["loc"])
        # A whole-config check (model validator) has no single field: its message names the fields.
        lines.append(f"  {msg}" if not e["loc"] else f"  {path} = {value!r}: {msg}")
    return ConfigError("invalid config:\n" + "\n".join(lines))


def _suggest(cls: type[BaseModel] | None, loc: tuple) -> str:
    """Walk the config classes along loc to list the allowed names at that level."""
    fields = cls.model_fields if cls else {}
    for part in loc[:-1]:
        ann = fields.get(part).annotation if part in fields else None
        fields = ann.model_fields if isinstance(ann, type) and issubclass(ann, BaseModel) else {}
    if not fields:
        return ""
    close = difflib.get_close_matches(str(loc[-1]), list(fields), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{hint} allowed: {', '.join(fields)}"


def build(cls: type[BaseModel], data: dict[str, Any]) -> BaseModel:
    """Validate data into cls, turning pydantic's error into a ConfigError that names the fix."""
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        raise explain(err, cls) from None


def load(target: str) -> Any:
    """Import "module:attribute" on first use: registries name code by such strings, so that reading
    a registry imports nothing heavy."""
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)
