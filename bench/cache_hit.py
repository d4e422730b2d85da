"""Cost of a cache hit: the pretrain flow on an S3 store, uncached then cached, and the cached train task alone.

Starts what a cluster has (unless given): an S3-compatible server (moto) and a Ray head on loopback,
which the flows join through RAY_ADDRESS. Prefect's API is warmed up first, so the timings are of the
flow calls themselves.

    python bench/cache_hit.py --data ../shared/data/tinyshakespeare.txt
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from pathlib import Path

from common import emit, parser

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from servers import RayCluster, make_bucket, moto_server  # noqa: E402  (the same helpers the tests use)

os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def run(data: str, endpoint: str, bucket: str, steps: int) -> dict:
    from prefect import flow

    from asymptote.config import PretrainConfig
    from asymptote.flows.pretraining import pretrain
    from asymptote.job import make_job
    from asymptote.store import Store
    from asymptote.tasks.pretrain import train

    cfg = PretrainConfig.model_validate(
        {
            "name": "cache-bench",
            "model": {"preset": "cpu-0.1m"},
            "data": {"source": data},
            "train": {"max_steps": steps, "batch_size": 8, "eval_every": steps},
            "store": {"uri": f"s3://{bucket}/asymptote", "endpoint_url": endpoint},
        }
    )
    flow(name="warm-up")(lambda: None)()  # bring Prefect's API up before timing anything
    first, uncached = timed(pretrain, cfg)
    second, cached = timed(pretrain, cfg)
    assert second.step_states["train"] == "Cached", second.step_states

    @flow(name="cached-train-probe")
    def probe() -> float:
        job = make_job(
            name=cfg.name,
            model=cfg.model,
            data=cfg.data,
            train=cfg.train,
            data_artifact=first.data.rel,
            compute=cfg.compute,
            store=Store(cfg.store).cfg,
        )
        states: dict[str, str] = {}
        _, seconds = timed(train, job, states=states)
        assert states["train"] == "Cached", states
        return seconds

    return {
        "uncached_flow_s": round(uncached, 3),
        "cached_flow_s": round(cached, 3),
        "cached_task_s": round(probe(), 3),
        "steps": steps,
        "store": cfg.store.uri,
    }


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=200)
    args = p.parse_args()
    cluster = RayCluster([{"CPU": 2}], os.environ | {"RAY_AUTH_MODE": "disabled"})
    with moto_server() as endpoint:
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        make_bucket(endpoint, bucket)
        cluster.start()
        os.environ |= {"RAY_ADDRESS": cluster.address, "RAY_AUTH_MODE": "disabled"}
        try:
            result = run(args.data, endpoint, bucket, args.steps)
        finally:
            cluster.stop()
    print(
        f"uncached {result['uncached_flow_s']} s, cached flow {result['cached_flow_s']} s, "
        f"cached train task {result['cached_task_s']} s",
        flush=True,
    )
    emit(result, args.save, args.data)


if __name__ == "__main__":
    main()
