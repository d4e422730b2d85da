"""Bad input, each kind through the real CLI: it must fail before anything trains, in one clear line.

Shared by bench/faults.py (which counts them) and tests/test_bad_input.py (which asserts each). A case
is clear when the command exits non-zero within a few seconds, prints no traceback, names the field,
file or URI (`expect`), and leaves the store untouched (it is never even created).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from asymptote.infra import settings

settings.apply()  # a benchmark script's session: Prefect and Ray settings before either loads


@dataclass
class Case:
    name: str
    args: list[str]
    expect: str
    """A piece of the message: the field, file or URI it must name."""
    env: dict[str, str] | None = None
    max_s: float = 20.0
    """Generous on a loaded 2-core machine: most take 1-3 s."""


def _files(tmp: Path) -> dict[str, str]:
    tiny, empty, folder = tmp / "tiny.txt", tmp / "empty.txt", tmp / "no-corpus"
    tiny.write_text("To be, or not to be, that is the question: " * 2)
    empty.write_text("")
    folder.mkdir(exist_ok=True)
    (folder / "notes.bin").write_bytes(b"\x00\x01")
    (tmp / "broken.yaml").write_text("train: {lr: [0.1\n")
    (tmp / "list.yaml").write_text("- train\n- model\n")
    (tmp / "corpus.txt").write_text(
        "All the world's a stage, and all the men and women merely players. " * 400
    )
    return {"tiny": str(tiny), "empty": str(empty), "folder": str(folder), "corpus": str(tmp / "corpus.txt")}


def cases(tmp: Path) -> list[Case]:
    f = _files(tmp)
    ok = ["--set", f"data.source={f['corpus']}"]  # a good corpus, so only the named mistake is wrong
    no_aws = {
        "AWS_ACCESS_KEY_ID": "",
        "AWS_SECRET_ACCESS_KEY": "",
        "AWS_PROFILE": "",
        "AWS_CONFIG_FILE": "/x",
    }
    no_aws |= {"AWS_SHARED_CREDENTIALS_FILE": "/x"}
    aws = {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}
    refused = "store.endpoint_url=http://127.0.0.1:9"
    p = ["pretrain", *ok]
    return [
        Case("unknown field", [*p, "--set", "train.weight_decey=0.1"], "train.weight_decey"),
        Case("unknown section", [*p, "--set", "trian.lr=0.1"], "trian"),
        Case("mistyped number", [*p, "--set", "train.lr=fast"], "train.lr"),
        Case("negative lr", [*p, "--set", "train.lr=-1"], "train.lr"),
        Case("fraction out of range", [*p, "--set", "data.val_fraction=1.5"], "data.val_fraction"),
        Case(
            "fractions leave no training",
            [*p, "--set", "data.val_fraction=0.6", "--set", "data.test_fraction=0.5"],
            "data.test_fraction",
        ),
        Case("heads do not divide width", [*p, "--set", "model.d_model=30"], "n_head"),
        Case("unknown preset", [*p, "--set", "model.preset=huge"], "huge"),
        Case("unknown schedule", [*p, "--set", "train.schedule=wavy"], "train.schedule"),
        Case("replay without a file", [*p, "--set", "train.schedule=replay"], "schedule_file"),
        Case("unknown tokenizer", [*p, "--set", "data.tokenizer=wordpiece"], "data.tokenizer"),
        Case("override without =", [*p, "--set", "train.lr"], "train.lr"),
        Case("override through a value", [*p, "--set", "train.lr.x=1"], "train.lr"),
        Case("unknown recipe", ["pretrain", "-r", "no-such-recipe"], "no-such-recipe"),
        Case("recipe not YAML", ["pretrain", "-r", str(tmp / "broken.yaml")], "broken.yaml"),
        Case("recipe not a mapping", ["pretrain", "-r", str(tmp / "list.yaml")], "list.yaml"),
        Case("unknown recompute step", [*p, "--recompute", "everything"], "everything"),
        Case("missing corpus", ["pretrain", "--set", f"data.source={tmp}/missing.txt"], "missing.txt"),
        Case("empty corpus", ["pretrain", "--set", f"data.source={f['empty']}"], "empty.txt"),
        Case("binary corpus", ["pretrain", "--set", "data.source=/bin/ls"], "/bin/ls"),
        Case("corpus too small", ["pretrain", "--set", f"data.source={f['tiny']}"], "too small"),
        Case("folder without corpus files", ["pretrain", "--set", f"data.source={f['folder']}"], "no-corpus"),
        Case("unknown builtin", ["pretrain", "--set", "data.source=builtin:wikipedia"], "builtin:wikipedia"),
        Case("token budget below a window", [*p, "--set", "data.max_train_tokens=10"], "max_train_tokens"),
        Case("store cannot be created", [*p, "--store", "/proc/asymptote-store"], "/proc/asymptote-store"),
        Case("store is a file", [*p, "--store", "/etc/hostname"], "/etc/hostname"),
        Case("store scheme unsupported", [*p, "--store", "gs://bucket/x"], "gs://bucket/x"),
        Case(
            "S3 without credentials",
            [*p, "--store", "s3://bucket/x", "--set", refused],
            "credentials",
            no_aws,
        ),
        Case("S3 endpoint refuses", [*p, "--store", "s3://bucket/x", "--set", refused], "127.0.0.1:9", aws),
        Case(
            "S3 corpus unreachable",
            [*p, "--set", "data.source=s3://b/c.txt", "--set", refused],
            "s3://b",
            aws,
        ),
        Case(
            "soup ingredient not committed",
            ["soups", *ok, "--set", "ingredients=[runs/nope]", "--set", "merges.methods=[]"],
            "runs/nope",
        ),  # fmt: skip
        Case(
            "merges without a base",
            ["soups", *ok, "--set", "ingredients=[runs/x]"],
            "base.run",
        ),
        Case("teacher not a committed run", ["distill", *ok, "--set", "teacher.members=[runs/x]"], "runs/x"),
        Case("sweep range reversed", ["soups", *ok, "--set", "sweep.lr=[0.1,0.001]"], "sweep.lr"),
        Case("main job unknown step", ["run", "main", *ok, "--set", "steps=[pretrain,finetune]"], "finetune"),
    ]


@dataclass
class Outcome:
    case: Case
    rc: int
    seconds: float
    stderr: str
    store_touched: bool

    @property
    def clear(self) -> bool:
        lines = [line for line in self.stderr.strip().splitlines() if line.strip()]
        return (
            self.rc != 0
            and "Traceback" not in self.stderr
            and 1 <= len(lines) <= 3
            and self.case.expect in self.stderr
            and self.seconds < self.case.max_s
            and not self.store_touched
        )


def run_case(case: Case, tmp: Path) -> Outcome:
    store = tmp / f"store-{abs(hash(case.name))}"
    args = case.args if "--store" in case.args else [*case.args, "--store", str(store)]
    env = os.environ | {"COLUMNS": "80"} | (case.env or {})
    env = {k: v for k, v in env.items() if v != ""}
    started = time.time()
    proc = subprocess.run(
        [sys.executable, "-m", "asymptote.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )
    return Outcome(case, proc.returncode, time.time() - started, proc.stderr, store.exists())


def run_all(tmp: Path) -> list[Outcome]:
    return [run_case(c, tmp) for c in cases(tmp)]
