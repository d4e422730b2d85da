"""Every manifest in infra/ parses, and its Ray, Prefect and Python versions match pyproject.toml's pins.

A manifest that drifts (an image tag, a rayVersion, a pip pin, a Python that requires-python excludes)
fails here; so does one whose parts stop fitting together (a service account, a Redis service, a
work pool or a Ray head service named differently in two places).
"""

from __future__ import annotations

import re
import shutil
import tomllib
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
MANIFEST_SUFFIXES = {".yaml", ".yml", ".json"}


def pins(pyproject: Path = ROOT / "pyproject.toml") -> dict[str, Any]:
    project = tomllib.loads(pyproject.read_text())["project"]
    exact = dict(
        re.fullmatch(r"([\w-]+)(?:\[[^\]]*\])?==([\w.]+)", d).groups() for d in project["dependencies"]
    )
    return {
        "ray": exact["ray"],
        "prefect": exact["prefect"],
        "python": SpecifierSet(project["requires-python"]),
    }


def manifest_files(root: Path = INFRA) -> list[Path]:
    files = [
        p
        for p in root.rglob("*")
        if p.is_file() and (p.suffix in MANIFEST_SUFFIXES or p.name == "Dockerfile")
    ]
    return sorted(p for p in files if "__pycache__" not in p.parts)


def load(path: Path) -> list[Any]:
    """Parsed documents (YAML/JSON); a Dockerfile is one document: its lines."""
    if path.name == "Dockerfile":
        return [path.read_text().splitlines()]
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def walk(node: Any, key: str = "") -> Iterator[tuple[str, Any]]:
    """(key, value) for every scalar in a document, keys of dicts included as context."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from walk(v, str(k))
    elif isinstance(node, list):
        for v in node:
            yield from walk(v, key)
    else:
        yield key, node


IMAGE_RULES = [  # (image name, tag pattern); python = "3" + minor digits
    (r"rayproject/ray(?:-ml)?", r"(?P<ray>\d+\.\d+\.\d+)-py(?P<py>3\d+)(?:-(?:gpu|cpu|cu\d+))?"),
    (r"prefecthq/prefect", r"(?P<prefect>\d+\.\d+\.\d+)-python(?P<pydot>3\.\d+)(?:-\w+)?"),
    (r"(?:[\w.-]+/)*asymptote", r"ray(?P<ray>\d+\.\d+\.\d+)-py(?P<py>3\d+)(?:-(?:gpu|cpu))?"),
    (r"python", r"(?P<pydot>3\.\d+)(?:[.\w-]*)"),
]
PIP_PINS = {"ray": r"\bray(?:\[[^\]]*\])?==([\w.]+)", "prefect": r"\bprefect==([\w.]+)"}


def _python_ok(version: str, spec: SpecifierSet) -> bool:
    return f"{version}.0" in spec


def string_problems(text: str, key: str, want: dict[str, Any]) -> list[str]:
    problems = []
    for name, tag_pattern in IMAGE_RULES:
        for m in re.finditer(rf"(?<![\w/.-])({name}):(\S+)", text):
            image, tag = m.group(1), m.group(2).strip("'\",")
            t = re.fullmatch(tag_pattern, tag)
            if t is None:
                problems.append(f"image {image}:{tag}: tag does not follow {tag_pattern}")
                continue
            found = t.groupdict()
            py = found.get("pydot") or (found["py"][0] + "." + found["py"][1:] if found.get("py") else None)
            for pkg in ("ray", "prefect"):
                if found.get(pkg) and found[pkg] != want[pkg]:
                    problems.append(f"image {image}:{tag}: {pkg} {found[pkg]} but pyproject pins {want[pkg]}")
            if py and not _python_ok(py, want["python"]):
                problems.append(f"image {image}:{tag}: Python {py} outside requires-python {want['python']}")
    for pkg, pattern in PIP_PINS.items():
        for version in re.findall(pattern, text):
            if version != want[pkg]:
                problems.append(f"{pkg}=={version} but pyproject pins {want[pkg]}")
    if key == "rayVersion" and text != want["ray"]:
        problems.append(f"rayVersion {text} but pyproject pins ray {want['ray']}")
    return problems


def version_problems(root: Path = INFRA, want: dict[str, Any] | None = None) -> list[str]:
    want = want or pins()
    out = []
    for path in manifest_files(root):
        for doc in load(path):
            for key, value in walk(doc):
                if isinstance(value, (str, int, float)):
                    out += [f"{path.relative_to(root)}: {p}" for p in string_problems(str(value), key, want)]
    return out


def _docs(rel: str) -> list[dict]:
    return load(INFRA / rel)


def _by_kind(kind: str) -> list[tuple[Path, dict]]:
    return [
        (p, d)
        for p in manifest_files(INFRA / "k8s")
        for d in load(p)
        if isinstance(d, dict) and d.get("kind") == kind
    ]


def _pod_specs(doc: Any) -> Iterator[dict]:
    if isinstance(doc, dict):
        if "containers" in doc:
            yield doc
        for v in doc.values():
            yield from _pod_specs(v)
    elif isinstance(doc, list):
        for v in doc:
            yield from _pod_specs(v)


# ----------------------------------------------------------------------------- tests


def test_every_manifest_parses_and_there_are_the_expected_ones():
    files = {p.relative_to(INFRA).as_posix() for p in manifest_files()}
    assert {
        "aws/cluster.yaml",
        "aws/iam.yaml",
        "k8s/raycluster.yaml",
        "k8s/rayjob.yaml",
        "k8s/prefect-worker.yaml",
        "k8s/redis.yaml",
        "k8s/serviceaccount.yaml",
        "docker/Dockerfile",
    } <= files
    for path in manifest_files():
        assert load(path), f"{path} is empty"


def test_versions_in_every_manifest_match_pyproject_pins():
    want = pins()
    assert version_problems() == []
    # the checks actually saw versions: each manifest family names the pinned Ray somewhere
    for rel in ("aws/cluster.yaml", "k8s/raycluster.yaml", "k8s/rayjob.yaml", "docker/Dockerfile"):
        assert want["ray"] in (INFRA / rel).read_text(), rel


@pytest.mark.parametrize(
    "old,new,what",
    [
        ('rayVersion: "2.60.0"', 'rayVersion: "2.59.0"', "rayVersion 2.59.0"),
        ("rayproject/ray:2.60.0-py311-gpu", "rayproject/ray:2.60.0-py310-gpu", "Python 3.10"),
        ("asymptote:ray2.60.0-py311-gpu", "asymptote:ray2.61.0-py311-gpu", "ray 2.61.0"),
        ("prefecthq/prefect:3.9.1-python3.11", "prefecthq/prefect:3.8.0-python3.11", "prefect 3.8.0"),
        (
            "pip install --quiet /home/ray/asymptote",
            "pip install 'ray[tune]==2.50.0' /home/ray/asymptote",
            "ray==2.50.0",
        ),
    ],
)
def test_a_drifted_manifest_fails(tmp_path, old, new, what):
    copy = tmp_path / "infra"
    shutil.copytree(INFRA, copy, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    edited = [p for p in manifest_files(copy) if old in p.read_text()]
    assert edited, f"{old!r} is in no manifest: update this test with the manifests"
    edited[0].write_text(edited[0].read_text().replace(old, new, 1))
    problems = version_problems(copy)
    assert any(what in p and edited[0].name in p for p in problems), problems


def test_prefect_yaml_names_the_pinned_prefect():
    assert yaml.safe_load((ROOT / "prefect.yaml").read_text())["prefect-version"] == pins()["prefect"]


def test_a_pin_bump_in_pyproject_without_the_manifests_fails():
    bumped = pins() | {"ray": "2.61.0"}
    assert any("2.61.0" in p for p in version_problems(want=bumped))


def test_aws_cluster_has_head_and_gpu_workers_with_the_s3_instance_profile():
    (cluster,), (iam,) = _docs("aws/cluster.yaml"), _docs("aws/iam.yaml")
    types = cluster["available_node_types"]
    assert cluster["provider"]["type"] == "aws" and cluster["head_node_type"] in types
    gpu = [
        t
        for n, t in types.items()
        if n != cluster["head_node_type"] and t["node_config"]["InstanceType"][0] in "gp"
    ]
    assert gpu and all(t["max_workers"] > 0 for t in gpu)
    profile = iam["Resources"]["NodeProfile"]["Properties"]["InstanceProfileName"]
    for t in types.values():
        assert t["node_config"]["IamInstanceProfile"]["Arn"].endswith(f":instance-profile/{profile}")
    statements = iam["Resources"]["S3Access"]["Properties"]["PolicyDocument"]["Statement"]
    assert {"s3:GetObject", "s3:PutObject", "s3:ListBucket"} <= {a for s in statements for a in s["Action"]}
    mount = next(iter(cluster["file_mounts"]))  # the checkout is copied to every node and installed there
    assert any("pip install" in c and mount in c for c in cluster["setup_commands"])
    redis_port = re.search(
        r"ASYMPTOTE_REDIS_URL=redis://[\w.]+:(\d+)", " ".join(cluster["docker"]["run_options"])
    )
    assert redis_port and any(
        f"redis-server --port {redis_port.group(1)}" in c for c in cluster["head_start_ray_commands"]
    )


def test_k8s_pods_use_the_irsa_service_account_and_gpu_workers():
    ((_, account),) = _by_kind("ServiceAccount")
    assert "eks.amazonaws.com/role-arn" in account["metadata"]["annotations"]
    for kind in ("RayCluster", "RayJob"):
        ((_, doc),) = _by_kind(kind)
        spec = doc["spec"] if kind == "RayCluster" else doc["spec"]["rayClusterSpec"]
        pods = list(_pod_specs(spec))
        assert pods and all(p["serviceAccountName"] == account["metadata"]["name"] for p in pods), kind
        gpus = [
            c["resources"]["limits"].get("nvidia.com/gpu")
            for g in spec["workerGroupSpecs"]
            for c in g["template"]["spec"]["containers"]
        ]
        assert any(gpus), f"{kind} has no GPU worker group"


def test_k8s_parts_fit_together():
    ((_, config),) = _by_kind("ConfigMap")
    services = {d["metadata"]["name"]: d for _, d in _by_kind("Service")}
    redis = re.fullmatch(r"redis://([\w-]+)\.[\w.-]+:(\d+)/\d+", config["data"]["ASYMPTOTE_REDIS_URL"])
    assert redis and redis.group(1) in services
    assert int(redis.group(2)) in [p["port"] for p in services[redis.group(1)]["spec"]["ports"]]
    api = re.fullmatch(r"http://([\w-]+)\.[\w.-]+:(\d+)/api", config["data"]["PREFECT_API_URL"])
    assert api and api.group(1) in services

    ((_, cluster),) = _by_kind("RayCluster")
    (worker,) = [d for _, d in _by_kind("Deployment") if d["metadata"]["name"] == "asymptote-prefect-worker"]
    (container,) = worker["spec"]["template"]["spec"]["containers"]
    pool = yaml.safe_load((ROOT / "prefect.yaml").read_text())["definitions"]["on_demand"]["name"]
    assert container["command"][container["command"].index("--pool") + 1] == pool
    ray_address = {e["name"]: e["value"] for e in container["env"]}["RAY_ADDRESS"]
    assert ray_address.startswith(f"ray://{cluster['metadata']['name']}-head-svc.")

    (kustomization,) = _docs("k8s/kustomization.yaml")
    assert all((INFRA / "k8s" / r).exists() for r in kustomization["resources"])
