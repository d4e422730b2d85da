"""The fault matrix: kill, corrupt, cut off and fill up parts of real flows at tiny scale, and check the promises.

Every run is the real CLI (`python -m asymptote.cli`) on real local Ray and a real Prefect API (one
server for the whole matrix), each fault injected at a point drawn from a printed seed. Promises
checked per cell: the run completes (or fails in one line naming the artifact or the disk), at most
one checkpoint interval is lost, the final loss equals the uninterrupted run's (CPU, same seed), every
visible manifest verifies, nothing committed before the fault is lost, and no committed step runs
twice. Bad input (bench/bad_inputs.py) is tried too. One JSON line last.

    nice -n 10 .venv/bin/python bench/faults.py --data /work/shared/data/tinyshakespeare.txt [--seed N]
"""

# ruff: noqa: E402
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from common import emit, parser

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
INTERVAL = 25  # checkpoint_every
STEPS = 250
TRAIN: dict = {}


def scale(steps: int, interval: int) -> None:
    """Set the runs' length and checkpoint interval (the suite's tests run shorter runs than the bench)."""
    global STEPS, INTERVAL
    STEPS, INTERVAL = steps, interval
    TRAIN.clear()
    TRAIN.update(
        max_steps=steps,
        batch_size=8,
        warmup_steps=5,
        eval_every=steps,
        eval_windows=32,
        log_every=5,
        checkpoint_every=interval,
        lr=3e-3,
    )


scale(STEPS, INTERVAL)


def log(*parts) -> None:
    print("[faults]", *parts, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- running the CLI


class Ctx:
    """What every cell shares: the corpus, a scratch folder, the seed's draws, the reference run."""

    def __init__(self, data: str, tmp: Path, rng: random.Random, env: dict[str, str]):
        self.data, self.tmp, self.rng, self.env = data, tmp, rng, env
        self.reference: dict | None = None

    def args(self, store: str, *extra: str, command: str = "pretrain") -> list[str]:
        sets = [f"train.{k}={v}" for k, v in TRAIN.items()]
        sets += ["model.preset=cpu-0.1m", f"data.source={self.data}", "data.max_train_tokens=100000"]
        out = [sys.executable, "-m", "asymptote.cli", command, "--json", "--store", store]
        return out + [a for s in sets for a in ("--set", s)] + list(extra)

    def start(self, argv: list[str], **env: str) -> subprocess.Popen:
        return subprocess.Popen(
            argv,
            env=self.env | env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own group, as a terminal's foreground job
        )

    def store(self, name: str) -> str:
        return str(self.tmp / name)


def finish(proc: subprocess.Popen, timeout: float = 900) -> tuple[int, dict | None, str]:
    out, err = proc.communicate(timeout=timeout)
    lines = [line for line in out.strip().splitlines() if line.startswith("{")]
    return proc.returncode, (json.loads(lines[-1]) if lines else None), err


def kill_group(proc: subprocess.Popen, sig=signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


# ----------------------------------------------------------------------------- looking at the store


def checkpoints(store: str) -> list[int]:
    found = Path(store).glob("runs/*/checkpoints/step_*/MANIFEST.json")
    return sorted(int(p.parent.name[5:]) for p in found)


def wait_for_checkpoint(store: str, proc: subprocess.Popen, at_least: int, timeout: float = 600) -> int:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        steps = checkpoints(store)
        if steps and steps[-1] >= at_least:
            return steps[-1]
        time.sleep(0.05)
    raise RuntimeError(f"no checkpoint >= {at_least} in {store} (rc {proc.poll()})")


def manifests(store: str) -> dict[str, dict]:
    out = {}
    try:
        found = list(Path(store).rglob("MANIFEST.json"))
    except FileNotFoundError:  # the store's folder went away while it was listed (a cell's tmpfs unmounted)
        return out
    for m in found:
        with contextlib.suppress(OSError, ValueError):
            out[str(m.parent.relative_to(store))] = json.loads(m.read_text())
    return out


def unverified(store: str, full: bool = False) -> list[str]:
    """Committed artifacts whose files are missing, of another size or (full) another checksum."""
    return [bad for rel, man in manifests(store).items() for bad in _bad_files(store, rel, man, full)]


def _bad_files(store: str, rel: str, man: dict, full: bool) -> list[str]:
    """The files one manifest lists that do not match it (only its own: not artifacts nested below it)."""
    bad = []
    for name, entry in man.get("files", {}).items():
        f = Path(store, rel, name)
        try:
            ok = f.stat().st_size == entry["size"]
            ok = ok and (not full or hashlib.sha256(f.read_bytes()).hexdigest() == entry["sha256"])
        except OSError:
            ok = not Path(store, rel, "MANIFEST.json").exists()  # removed since the listing: fine
        if not ok:
            bad.append(f"{rel}/{name}")
    return bad


class Watcher:
    """Polls stores while a cell runs: any visible manifest whose files do not match is counted."""

    def __init__(self):
        self.stores: set[str] = set()
        self.seen: set[str] = set()
        self.errors: list[str] = []  # what stopped a poll: a watcher that died would pass every check
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            for store in list(self.stores):
                try:
                    self.seen.update(f"{store}:{b}" for b in unverified(store))
                except Exception as err:  # noqa: BLE001 - recorded and reported, and the watch goes on
                    self.errors.append(f"{store}: {err!r}")

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def committed_lost(before: dict[str, dict], store: str) -> list[str]:
    """Artifacts committed before the fault that are gone or changed after it (superseded
    checkpoints of an unfinished run excepted: training deletes those by design). A run committed
    before the fault keeps its folder's checkpoints as nested artifacts of their own, so a checkpoint
    the cell corrupted is never counted against the run around it."""
    after = manifests(store)
    return [
        rel
        for rel, man in before.items()
        if "/checkpoints/" not in rel
        and (
            rel not in after or after[rel]["files"] != man["files"] or _bad_files(store, rel, man, full=True)
        )
    ]


def flip_byte(path: Path, rng: random.Random) -> int:
    data = bytearray(path.read_bytes())
    i = rng.randrange(len(data))
    data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    return i


def loss_diff(result: dict | None, ref: dict) -> float:
    if not result:
        return float("inf")
    a, b = result["run"]["summary"], ref["run"]["summary"]
    return max(abs(a["val_loss"] - b["val_loss"]), abs(a["train_loss"] - b["train_loss"]))


def cell(name: str, **fields) -> dict:
    row = {"cell": name, "injected": 1, "survived": False, "steps_lost": 0, "loss_diff": 0.0}
    return row | {"unverified": 0, "committed_lost": 0, "double_runs": 0} | fields


# ----------------------------------------------------------------------------- the cells


def reference(ctx: Ctx, w: Watcher) -> dict:
    store = ctx.store("reference")
    w.stores.add(store)
    rc, res, err = finish(ctx.start(ctx.args(store)))
    if rc != 0 or res is None:
        raise RuntimeError(f"the uninterrupted run failed: {err[-2000:]}")
    ctx.reference = res
    log("reference", res["run"]["summary"]["val_loss"], res["run"]["summary"]["train_loss"])
    return res


def _kill_then_rerun(
    ctx: Ctx, w: Watcher, name: str, kill, corrupt_checkpoint: bool = False, env: dict | None = None
) -> dict:
    """Start a run, let `kill(proc)` inject the fault after a checkpoint drawn from the seed, then make
    the same call again; the rerun must resume on the uninterrupted curve."""
    store = ctx.store(name)
    w.stores.add(store)
    env = env or {}
    at = INTERVAL * ctx.rng.randint(1, STEPS // INTERVAL - 3)
    proc = ctx.start(ctx.args(store), **env)
    got = wait_for_checkpoint(store, proc, at)
    time.sleep(ctx.rng.uniform(0, 1.5))  # a random point inside the next interval
    kill(proc)
    rc1, res1, _ = finish(proc)
    latest = checkpoints(store)[-1] if checkpoints(store) else 0
    note = f"fault after checkpoint {got} (drawn {at}); rc {rc1}"
    if latest >= STEPS:  # the random wait outlasted training: the fault hit a finished run
        note += "; training had finished before the fault"
    if res1 is not None:  # Ray retried inside the same call (a worker killed): that is the rerun
        rerun, rc = res1, rc1
    else:
        if corrupt_checkpoint:
            ck = sorted(Path(store).glob(f"runs/*/checkpoints/step_{latest:08d}"))[0]
            flip_byte(ck / "model.safetensors", ctx.rng)
            note += f"; corrupted checkpoint {latest}"
        before = manifests(store)
        rc, rerun, err = finish(ctx.start(ctx.args(store), **env))
        note += f"; rerun rc {rc}"
        if rc != 0:
            note += f": {err.strip().splitlines()[-1:]}"
    resumed_from = _resumed_from(store, latest, corrupt_checkpoint)
    states = (rerun or {}).get("step_states", {})
    row = cell(
        name,
        survived=rc == 0 and loss_diff(rerun, ctx.reference) == 0,
        steps_lost=(latest - resumed_from) / INTERVAL + 1,
        loss_diff=loss_diff(rerun, ctx.reference),
        double_runs=int(res1 is None and states.get("prepare-data") == "Completed"),
        resumed=(rerun or {}).get("run", {}).get("summary", {}).get("resumed"),
        note=note,
    )
    if res1 is None:
        lost = committed_lost(before, store)
        row["committed_lost"] = len(lost)
        if lost:
            row["note"] += f"; lost {lost}"
    return row


def _resumed_from(store: str, latest: int, corrupted: bool) -> int:
    """The checkpoint a resume starts from: the newest that verifies (the corrupted one is skipped)."""
    return latest - INTERVAL if corrupted else latest


def cell_worker_killed(ctx: Ctx, w: Watcher) -> dict:
    """1. The Ray Train worker process (the training process) SIGKILLed mid-run: Ray retries the task,
    which resumes from the latest checkpoint within the same call."""

    def kill(proc):
        workers = [p for p in psutil.Process(proc.pid).children(recursive=True) if _is_trainer(p)]
        if not workers:
            raise RuntimeError("no training worker process found")
        for p in workers:
            p.kill()

    return _kill_then_rerun(ctx, w, "worker-killed", kill)


def _is_trainer(p: psutil.Process) -> bool:
    with contextlib.suppress(psutil.Error):
        return "_local_mode_fit" in " ".join(p.cmdline()) or "_local_mode_fit" in p.name()
    return False


# Ray's health check notices a dead node after period x threshold (3 s x 5 by default): faster here.
FAST_NODE_DEATH = {"RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "3"}


def cell_node_killed(ctx: Ctx, w: Watcher) -> dict:
    """2. The worker node of a two-node cluster SIGKILLed mid-run (its raylet and every process under
    it). The head (`ray start --head`) has no CPUs, as a head that only schedules, so all work runs on
    the worker node (`ray start --address`); after the kill a replacement node joins, as a cluster's
    autoscaler brings one, and Ray retries the training task there (max_retries), which resumes from
    the latest checkpoint in the store within the same call."""
    from servers import RayCluster

    auth = {"RAY_AUTH_MODE": "token"}  # every process of a cluster must agree on auth
    cluster = RayCluster([{"CPU": 0}], ctx.env | auth | FAST_NODE_DEATH).start()
    try:
        port = cluster.add_node(cpus=2)

        def kill(proc):
            if not cluster.kill_node(port):
                raise RuntimeError("no process of the worker node found")
            cluster.add_node(cpus=2)

        return _kill_then_rerun(ctx, w, "node-killed", kill, env=auth | {"RAY_ADDRESS": cluster.address})
    finally:
        cluster.stop()


OUTAGE_S = float(os.environ.get("ASYMPTOTE_FAULT_OUTAGE_S", 30))  # the suite's test sets it shorter
LOCAL_S3_KEYS = {"AWS_ACCESS_KEY_ID": "faults-key", "AWS_SECRET_ACCESS_KEY": "faults-secret"}


def cell_s3_outage(ctx: Ctx, w: Watcher) -> dict:
    """4. The S3 server stopped for OUTAGE_S mid-run (connections refused: the process is gone), then
    started again on the same port with the same data (tests/moto_persistent.py keeps moto's data
    across the restart). botocore's configured retries (asymptote.store.s3_retries) carry every read
    and write through: the same call completes, on the uninterrupted curve, with nothing lost."""
    from servers import PersistentS3

    creds = {k: os.environ.get(k, v) for k, v in LOCAL_S3_KEYS.items()}
    s3 = PersistentS3(ctx.tmp / "s3-state.pkl").start()
    try:
        bucket = S3Bucket(s3.url, "faults", creds)
        at = INTERVAL * ctx.rng.randint(1, STEPS // INTERVAL - 3)
        proc = ctx.start(ctx.args("s3://faults/store", "--set", f"store.endpoint_url={s3.url}"), **creds)
        got = bucket.wait_for_checkpoint(proc, at)
        time.sleep(ctx.rng.uniform(0, 1.5))
        before = bucket.manifests()
        down = time.time()
        s3.stop()
        time.sleep(OUTAGE_S)
        s3.start()
        down = time.time() - down
        rc, res, err = finish(proc)
        bad = bucket.unverified()
        after = bucket.manifests()
        lost = sum(1 for rel, m in before.items() if "/checkpoints/" not in rel and after.get(rel) != m)
        resumed = (res or {}).get("run", {}).get("summary", {}).get("resumed")
        said = err.strip().splitlines()[-1:] if rc else ""
        return cell(
            "s3-outage",
            survived=rc == 0 and loss_diff(res, ctx.reference) == 0,
            steps_lost=1 if resumed else 0,
            loss_diff=loss_diff(res, ctx.reference),
            unverified=len(bad),
            committed_lost=lost,
            note=f"S3 down {down:.1f} s after checkpoint {got} (drawn {at}); rc {rc}; resumed {resumed}; "
            f"{len(before)} artifacts committed before, {len(after)} after{'; ' if said else ''}{said}",
        )
    finally:
        s3.stop()


class S3Bucket:
    """The fault's view of an S3 store: committed manifests and whether their files match."""

    def __init__(self, endpoint: str, name: str, creds: dict[str, str]):
        import boto3

        keys = {
            "aws_access_key_id": creds["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": creds["AWS_SECRET_ACCESS_KEY"],
        }
        self.client = boto3.client("s3", endpoint_url=endpoint, **keys)
        self.name = name
        self.client.create_bucket(Bucket=name)

    def keys(self) -> dict[str, int]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name)
        return {o["Key"]: o["Size"] for page in pages for o in page.get("Contents", [])}

    def manifests(self) -> dict[str, dict]:
        out = {}
        for key in self.keys():
            if key.endswith("/MANIFEST.json"):
                body = self._get(key)
                if body is not None:  # None: removed since the listing (a superseded checkpoint)
                    out[key.rsplit("/", 1)[0]] = json.loads(body)["files"]
        return out

    def _get(self, key: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=self.name, Key=key)["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None

    def unverified(self) -> list[str]:
        bad = []
        for rel, files in self.manifests().items():
            for name, entry in files.items():
                data = self._get(f"{rel}/{name}")
                if data is None and self._get(f"{rel}/MANIFEST.json") is None:
                    break  # the whole artifact was removed since the listing: fine
                if data is None or hashlib.sha256(data).hexdigest() != entry["sha256"]:
                    bad.append(f"{rel}/{name}")
        return bad

    def wait_for_checkpoint(self, proc: subprocess.Popen, at_least: int, timeout: float = 600) -> int:
        deadline = time.time() + timeout
        while time.time() < deadline and proc.poll() is None:
            steps = [
                int(k.split("/step_")[1][:8])
                for k in self.keys()
                if "/checkpoints/step_" in k and k.endswith("MANIFEST.json")
            ]
            if steps and max(steps) >= at_least:
                return max(steps)
            time.sleep(0.1)
        raise RuntimeError(f"no checkpoint >= {at_least} on S3 (rc {proc.poll()})")


LEASE_S = 20  # longer than the second process takes to reach the lock, so that it has to wait


def cell_lock_holder_killed(ctx: Ctx, w: Watcher) -> dict:
    """6a. The holder of a step's Redis lock (how a cluster locks steps) SIGKILLed while it trains, and
    the same call made at once from another process: the lock's lease lapses (no one renews it), the
    other process takes the step over, resumes from the latest checkpoint, and the step runs once."""
    import redis
    from servers import redis_server

    seen: dict[str, object] = {}
    with redis_server() as url:
        r = redis.Redis.from_url(url)

        def kill(proc):
            locks = [k for k in r.keys("lock:*")]
            seen["held"] = len(locks)
            seen["ttl"] = max((r.pttl(k) / 1000 for k in locks), default=None)
            kill_group(proc)
            seen["killed"] = time.time()
            threading.Thread(target=_note_release, args=(r, locks, seen), daemon=True).start()

        env = {"ASYMPTOTE_REDIS_URL": url, "ASYMPTOTE_LOCK_LEASE_S": str(LEASE_S)}
        row = _kill_then_rerun(ctx, w, "lock-holder-killed", kill, env=env)
    freed = seen.get("freed")
    row["note"] += (
        f"; locks held at the kill {seen.get('held')} (ttl {seen.get('ttl')} s), freed {freed} s after"
    )
    row["survived"] = row["survived"] and bool(seen.get("held")) and freed is not None
    return row


def _note_release(r, locks: list, seen: dict) -> None:
    while any(r.exists(k) for k in locks):
        time.sleep(0.1)
    seen["freed"] = round(time.time() - seen["killed"], 1)


def cell_flow_killed(ctx: Ctx, w: Watcher) -> dict:
    """3 (and 6a). The flow's own process SIGKILLed mid-flow (holding the train step's lock), then the
    same command again: the dead holder's lock is freed and the run resumes."""
    return _kill_then_rerun(ctx, w, "flow-killed", lambda proc: kill_group(proc, signal.SIGKILL))


def cell_checkpoint_corrupt(ctx: Ctx, w: Watcher) -> dict:
    """5a. The newest checkpoint of a killed run corrupted by one byte: the resume refuses it and starts
    from the one before (one more interval lost, by construction), on the same curve."""
    row = _kill_then_rerun(ctx, w, "checkpoint-corrupt", lambda p: kill_group(p), corrupt_checkpoint=True)
    row["steps_lost"] -= 1  # the corrupted interval is the fault itself, not a loss of the resume
    return row


def cell_committed_corrupt(ctx: Ctx, w: Watcher, what: str) -> dict:
    """5b/5c. A committed run's weights or a token shard corrupted (one byte) or truncated: the next call
    that reads it fails in one line naming the file."""
    store = ctx.store("reference")
    ref = ctx.reference
    pattern = "runs/*/model.safetensors" if what == "weights" else "data/*/train_*.bin"
    target = sorted(Path(store).glob(pattern))[0]
    original = target.read_bytes()
    # Unwatched before it is touched: the corruption is the fault itself, not something the code made
    # (the watcher polls every 0.25 s and once saw the file half rewritten).
    w.stores.discard(store)
    extra = ["--recompute", "evaluate"] if what == "weights" else ["--set", "train.train_seed=7"]
    try:
        if ctx.rng.random() < 0.5:
            flip_byte(target, ctx.rng)
            how = "one byte flipped"
        else:
            target.write_bytes(original[: ctx.rng.randrange(len(original))])
            how = "truncated"
        rc, res, err = finish(ctx.start(ctx.args(store, *extra)))
    finally:
        target.write_bytes(original)  # the matrix goes on with the store intact
    lines = [line for line in err.strip().splitlines() if line.strip()]
    clear = rc != 0 and "Traceback" not in err and target.name in err and "checksum" in err
    return cell(
        f"{what}-corrupt",
        survived=clear,
        loss_diff=0.0,
        note=f"{target.relative_to(store)} {how}; rc {rc}; said: {lines[-1][:300] if lines else ''}",
        result=bool(res),
    ) | {"_ref_key": ref["run"]["key"]}


def cell_two_at_once(ctx: Ctx, w: Watcher) -> dict:
    """6b. Two identical flows started at once in two processes: one trains, the other reuses it."""
    store = ctx.store("two-at-once")
    w.stores.add(store)
    procs = [ctx.start(ctx.args(store)) for _ in range(2)]
    out = [finish(p) for p in procs]
    trains = sorted((r or {}).get("step_states", {}).get("train", "?") for _, r, _ in out)
    ok = all(rc == 0 for rc, _, _ in out) and trains == ["Cached", "Completed"]
    same = ok and out[0][1]["run"] == out[1][1]["run"]
    return cell(
        "two-at-once",
        survived=bool(same),
        loss_diff=loss_diff(out[0][1], ctx.reference),
        double_runs=max(0, trains.count("Completed") - 1),
        note=f"train states {trains}; rcs {[rc for rc, _, _ in out]}",
    )


def cell_disk_full(ctx: Ctx, w: Watcher) -> dict:
    """7. The local store's filesystem fills mid-write (a small tmpfs): the run fails in one line naming
    the disk, every visible manifest verifies, the committed data artifact is intact."""
    mount = Path(tempfile.mkdtemp(prefix="faults-tmpfs-"))
    size_kb = ctx.rng.randint(2600, 4200)
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(mount)], check=True)
    except (subprocess.CalledProcessError, FileNotFoundError) as err:
        return cell("disk-full", injected=0, note=f"skipped: cannot mount a tmpfs here ({err})")
    try:
        store = str(mount / "store")
        w.stores.add(store)
        rc, res, err = finish(ctx.start(ctx.args(store)))
        lines = [line for line in err.strip().splitlines() if line.strip()]
        said = lines[-1] if lines else ""
        bad = unverified(store, full=True)
        data_ok = bool(list(Path(store).glob("data/*/MANIFEST.json")))
        clear = rc != 0 and "Traceback" not in err and "space" in said
        return cell(
            "disk-full",
            survived=clear or (rc == 0 and loss_diff(res, ctx.reference) == 0),
            unverified=len(bad),
            note=f"tmpfs {size_kb} KiB; rc {rc}; data committed: {data_ok}; said: {said[:300]}",
        )
    finally:
        w.stores.discard(str(mount / "store"))
        subprocess.run(["umount", "-l", str(mount)], check=False)
        with contextlib.suppress(OSError):
            mount.rmdir()


def cell_sigint(ctx: Ctx, w: Watcher) -> dict:
    """8. Ctrl-C (SIGINT to the process group, as a terminal sends it) at a random point of `asymptote
    run`, then the same command again: a prompt exit, no flow left Running, the rerun on the curve."""
    store = ctx.store("sigint")
    w.stores.add(store)
    recipe = ctx.tmp / "main-tiny.yaml"
    recipe.write_text(
        json.dumps(
            {
                "steps": ["pretrain"],
                "data": {"source": ctx.data, "max_train_tokens": 100000},
                "pretrain": {"model": {"preset": "cpu-0.1m"}, "train": TRAIN},
            }
        )
    )
    argv = [sys.executable, "-m", "asymptote.cli", "run", str(recipe), "--json", "--store", store]
    after = ctx.rng.uniform(2, 25)
    earlier = flow_runs()  # other cells' SIGKILLed flows stay "Running" (nothing could record their end)
    proc = ctx.start(argv)
    time.sleep(after)
    sent = time.time()
    kill_group(proc, signal.SIGINT)
    rc1, _, err1 = finish(proc)
    exit_s = time.time() - sent
    running = sum(state == "Running" for run, state in flow_runs().items() if run not in earlier)
    rc, res, err = finish(ctx.start(argv))
    pre = (res or {}).get("figures", {}).get("pretrain")  # the main job keeps headline figures per step
    ref = ctx.reference["run"]
    same_run = bool(pre) and pre["run_uri"].endswith(ref["key"])
    diff = abs(pre["val_loss"] - ref["summary"]["val_loss"]) if same_run else float("inf")
    return cell(
        "sigint",
        survived=rc == 0 and diff == 0 and exit_s < 45 and not running,
        loss_diff=diff,
        steps_lost=1,
        note=f"SIGINT {after:.1f} s after start; exit in {exit_s:.1f} s (rc {rc1}); flows left Running: "
        f"{running}; rerun rc {rc}; {err1.strip().splitlines()[-1:] if err1.strip() else ''}",
    )


def flow_runs() -> dict[str, str]:
    """Every flow run the Prefect API knows: id -> state name."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return {str(r.id): r.state_name for r in client.read_flow_runs(limit=200)}


def cell_bad_inputs(ctx: Ctx) -> tuple[int, int, list[str]]:
    import bad_inputs

    out = bad_inputs.run_all(ctx.tmp / "bad")
    return len(out), sum(o.clear for o in out), [o.case.name for o in out if not o.clear]


# ----------------------------------------------------------------------------- the matrix


CELLS = {
    "worker_killed": cell_worker_killed,
    "node_killed": cell_node_killed,
    "s3_outage": cell_s3_outage,
    "flow_killed": cell_flow_killed,
    "lock_holder_killed": cell_lock_holder_killed,
    "checkpoint_corrupt": cell_checkpoint_corrupt,
    "weights_corrupt": lambda c, w: cell_committed_corrupt(c, w, "weights"),
    "shard_corrupt": lambda c, w: cell_committed_corrupt(c, w, "shard"),
    "two_at_once": cell_two_at_once,
    "disk_full": cell_disk_full,
    "sigint": cell_sigint,
}
NOT_RUN = {}


def run_matrix(data: str, seed: int, only: list[str] | None = None) -> dict:
    from prefect.testing.utilities import prefect_test_harness

    started = time.time()
    rng = random.Random(seed)
    (tmp := Path(tempfile.mkdtemp(prefix="faults-"))).joinpath("bad").mkdir()
    rows: list[dict] = []
    with prefect_test_harness(server_startup_timeout=180), Watcher() as w:
        from prefect.settings import PREFECT_API_URL

        env = dict(os.environ) | {"PREFECT_API_URL": PREFECT_API_URL.value(), "ASYMPTOTE_CACHE": str(tmp)}
        ctx = Ctx(data, tmp, rng, env)
        reference(ctx, w)
        for name, fn in CELLS.items():
            if only and name not in only:
                continue
            t0 = time.time()
            try:
                row = fn(ctx, w)
            except Exception as err:  # a cell that breaks is a fault not survived, reported as such
                row = cell(name, note=f"cell error: {type(err).__name__}: {err}"[:400])
            row["wall_s"] = round(time.time() - t0, 1)
            log(json.dumps(row, default=str))
            rows.append(row)
        unverified_seen = len(w.seen)
        for err in w.errors:
            log(f"watcher could not poll: {err}")
        tried, clear, unclear = cell_bad_inputs(ctx) if not only or "bad_inputs" in only else (0, 0, [])
    return summarise(rows, seed, started, unverified_seen, tried, clear, unclear)


def summarise(rows, seed, started, unverified_seen, tried, clear, unclear) -> dict:
    run = [r for r in rows if r["injected"]]
    finite = [r["loss_diff"] for r in run if r["loss_diff"] != float("inf")]
    return {
        "faults_injected": sum(r["injected"] for r in run),
        "faults_survived": sum(bool(r["survived"]) for r in run),
        "steps_lost_max": max((r["steps_lost"] for r in run), default=0),
        "final_loss_max_abs_diff": max(finite, default=0.0) if len(finite) == len(run) else float("inf"),
        "unverified_artifacts_seen": unverified_seen + sum(r["unverified"] for r in run),
        "committed_lost": sum(r["committed_lost"] for r in run),
        "double_runs": sum(r["double_runs"] for r in run),
        "bad_inputs_tried": tried,
        "bad_inputs_clear": clear,
        "bad_inputs_unclear": unclear,
        "cells": {
            r["cell"]: {k: r[k] for k in ("survived", "steps_lost", "loss_diff", "note")} for r in rows
        },
        "not_run": NOT_RUN,
        "seed": seed,
        "wall_s": round(time.time() - started, 1),
    }


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--cells", default="", help="comma-separated cells (default: all, and the bad inputs)")
    args = p.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    log(f"seed {seed}")
    only = [c for c in args.cells.split(",") if c] or None
    emit(run_matrix(str(Path(args.data).resolve()), seed, only), args.save, args.data)


if __name__ == "__main__":
    main()
