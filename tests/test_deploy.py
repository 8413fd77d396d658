"""deploy/: the KubeRay RayCluster manifest and its image, checked without a cluster.

The fields KubeRay needs (ray.io/v1 RayCluster: headGroupSpec, workerGroupSpecs with
groupName, replicas, rayStartParams as strings, pod templates), and what this project
needs of them: images at the Ray version of requirements.lock, token authentication
on every container, resources on every container, a GPU group, and the README's
settings on a volume every pod mounts.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "deploy" / "raycluster.yaml"


def ray_version() -> str:
    [version] = re.findall(r"^ray==(\S+)$", (ROOT / "requirements.lock").read_text(), re.M)
    return version


def documents() -> dict[str, dict[str, Any]]:
    """The manifest's documents by kind (one of each)."""
    docs = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d is not None]
    kinds = [d["kind"] for d in docs]
    assert len(kinds) == len(set(kinds)), kinds
    return {d["kind"]: d for d in docs}


def pod_templates() -> dict[str, dict[str, Any]]:
    """{'head' | worker group name: pod spec}."""
    spec = documents()["RayCluster"]["spec"]
    pods = {"head": spec["headGroupSpec"]["template"]["spec"]}
    for group in spec["workerGroupSpecs"]:
        pods[group["groupName"]] = group["template"]["spec"]
    return pods


def test_raycluster_has_the_fields_kuberay_needs() -> None:
    cluster = documents()["RayCluster"]
    assert cluster["apiVersion"] == "ray.io/v1" and cluster["metadata"]["name"]
    spec = cluster["spec"]
    assert spec["rayVersion"] == ray_version()
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    for group in groups:
        params = group["rayStartParams"]
        # KubeRay's rayStartParams is map[string]string: a bare 0 or true is refused.
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in params.items())
        assert group["template"]["spec"]["containers"]
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"  # as the README's head
    workers = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    assert sorted(workers) == ["cpu", "gpu"]
    for group in workers.values():
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]


@pytest.mark.parametrize("pod", ["head", "cpu", "gpu"])
def test_every_container_is_pinned_authenticated_and_sized(pod: str) -> None:
    spec = pod_templates()[pod]
    for container in spec["containers"]:
        suffix = "-gpu" if pod == "gpu" else ""
        assert container["image"].endswith(f":{ray_version()}-py311{suffix}"), container["image"]
        env = {e["name"]: e for e in container["env"]}
        assert env["RAY_AUTH_MODE"]["value"] == "token"
        secret = env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]
        assert secret == {"name": "mtlb-ray-token", "key": "auth_token"}
        resources = container["resources"]
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources[kind])
        gpus = int(resources["limits"].get("nvidia.com/gpu", 0))
        assert (gpus >= 1) == (pod == "gpu")


@pytest.mark.parametrize("pod", ["head", "cpu", "gpu"])
def test_every_pod_gets_the_settings_and_mounts_the_shared_volume(pod: str) -> None:
    docs = documents()
    settings = docs["ConfigMap"]["data"]
    claim = docs["PersistentVolumeClaim"]
    assert "ReadWriteMany" in claim["spec"]["accessModes"]
    spec = pod_templates()[pod]
    volumes = {v["name"]: v for v in spec["volumes"]}
    for container in spec["containers"]:
        assert {"configMapRef": {"name": docs["ConfigMap"]["metadata"]["name"]}} in container[
            "envFrom"
        ]
        for mount in container["volumeMounts"]:
            source = volumes[mount["name"]]["persistentVolumeClaim"]["claimName"]
            assert source == claim["metadata"]["name"]
        mounted = [m["mountPath"] for m in container["volumeMounts"]]
        # Checkpoints and data live on the volume every node mounts (README: Storage).
        for variable in ("MTLB_STORAGE", "MTLB_DATA_ROOT"):
            assert any(settings[variable].startswith(f"{m}/") for m in mounted), variable


def test_dockerfile_builds_on_rays_image_at_the_locked_version() -> None:
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    assert f"ARG BASE=rayproject/ray:{ray_version()}-py311\n" in text
    assert "FROM ${BASE}" in text and "-r requirements.lock" in text
    # Every package the project ships (pyproject.toml) is copied into the image.
    found = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    for package in (p.rstrip("*") for p in found["packages"]["find"]["include"]):
        assert f"COPY --chown=ray:users {package} {package}" in text
