"""The deployment files are valid, offline, and agree with the code they deploy.

* Kubernetes manifests (deploy/k8s): kubernetes-validate's bundled schemas, strict (an
  unknown field fails); KEDA's resources: deploy/k8s/schemas/keda.json (the CRD fields used).
* docker-compose.yml: the compose-spec schema that check-jsonschema ships.
* Probes name the API's real health routes; each KEDA trigger watches a queue a worker
  Deployment consumes, under the key Celery's Redis transport really uses.
"""

from __future__ import annotations

import copy
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
K8S_VERSION = "1.33.0"
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def all_manifests() -> list[tuple[str, dict[str, Any]]]:
    return [(p.name, d) for p in sorted(K8S.glob("*.yaml")) for d in documents(p)]


def keda_validator() -> jsonschema.Draft202012Validator:
    schema = json.loads((K8S / "schemas" / "keda.json").read_text())
    return jsonschema.Draft202012Validator(schema)


def validate(doc: dict[str, Any]) -> None:
    if doc.get("kind") in KEDA_KINDS:
        keda_validator().validate(doc)
    else:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_there_are_manifests_for_every_part() -> None:
    kinds = {(d["kind"], d["metadata"]["name"]) for _, d in all_manifests()}
    for part in ("prunekit-api", "prunekit-worker-gpu", "prunekit-worker-cpu"):
        assert ("Deployment", part) in kinds
    assert ("ScaledObject", "prunekit-worker-gpu") in kinds


@pytest.mark.parametrize(("name", "doc"), all_manifests(), ids=lambda v: str(v)[:40])
def test_every_manifest_is_valid(name: str, doc: dict[str, Any]) -> None:
    validate(doc)


def test_the_validators_refuse_a_typo() -> None:
    """Neither check is vacuous: an unknown field fails each kind of manifest."""
    for _, doc in all_manifests():
        if doc["kind"] in ("Deployment", "ScaledObject"):
            bad = copy.deepcopy(doc)
            bad["spec"]["replicaz"] = 3
            with pytest.raises((kubernetes_validate.ValidationError, jsonschema.ValidationError)):
                validate(bad)
    redis = next(d for _, d in all_manifests() if d["kind"] == "ScaledObject")
    bad = copy.deepcopy(redis)
    bad["spec"]["triggers"][0]["metadata"].pop(next(iter(bad["spec"]["triggers"][0]["metadata"])))
    bad["spec"]["triggers"][0]["metadata"]["lisName"] = "x"
    with pytest.raises(jsonschema.ValidationError):
        validate(bad)


def deployment(name: str) -> dict[str, Any]:
    return next(
        d for _, d in all_manifests() if d["kind"] == "Deployment" and d["metadata"]["name"] == name
    )


def test_api_probes_point_at_the_real_health_routes() -> None:
    from app.health.endpoints import router

    routes = {getattr(r, "path", "") for r in router.routes}
    api = deployment("prunekit-api")["spec"]["template"]["spec"]["containers"][0]
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz" in routes
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz" in routes
    port = api["livenessProbe"]["httpGet"]["port"]
    assert port in {p["name"] for p in api["ports"]}
    assert api["command"][-1] == str(api["ports"][0]["containerPort"])


def worker_queues(name: str) -> list[str]:
    command = deployment(name)["spec"]["template"]["spec"]["containers"][0]["command"]
    return str(command[command.index("-Q") + 1]).split(",")


def test_keda_triggers_watch_queues_the_workers_consume() -> None:
    config = next(d for _, d in all_manifests() if d["kind"] == "ConfigMap")["data"]
    prefix = config.get("PRUNEKIT_KEY_PREFIX", "prunekit")
    for _, doc in all_manifests():
        if doc["kind"] != "ScaledObject":
            continue
        target = doc["spec"]["scaleTargetRef"]["name"]
        for trigger in doc["spec"]["triggers"]:
            meta = trigger["metadata"]
            if trigger["type"] == "redis":
                # kombu's Redis transport: global_keyprefix + queue name (worker.celery_app)
                match = re.fullmatch(rf"{re.escape(prefix)}:celery:(.+)", meta["listName"])
                assert match, meta["listName"]
                queue = match.group(1)
            else:
                queue = meta["queueName"]
            assert queue == worker_queues(target)[0], (target, queue)


def compose_schema() -> dict[str, Any]:
    path = resources.files("check_jsonschema") / "builtin_schemas" / "vendor" / "compose-spec.json"
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def test_docker_compose_is_valid_and_the_s3_workers_share_no_volume() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    validator.validate(compose)
    bad = copy.deepcopy(compose)
    bad["services"]["api"]["portz"] = ["1:1"]
    assert not validator.is_valid(bad)
    services = compose["services"]
    workers = [n for n, s in services.items() if "s3" in s.get("profiles", []) and "worker" in n]
    assert len(workers) == 2
    for name in workers:
        service = services[name]
        assert not service.get("volumes"), f"{name} mounts a volume"
        assert service["environment"]["PRUNEKIT_STORAGE"].startswith("s3://")
    assert "minio" in services and "s3" in services["minio"]["profiles"]
