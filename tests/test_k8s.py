"""deploy/k8s/: no cluster here, so the manifests are checked offline, with sockets blocked.

- every manifest against the Kubernetes API schemas of one pinned release, through
  kubernetes-validate in strict mode (unknown fields are errors). What kubectl would only warn
  about fails here too: an apiVersion the release no longer serves (the library's "schema not
  found" warning), a field the schema calls deprecated, a duplicate key in a list that the API
  merges by key (env names, ports), and a duplicate YAML key (the parser would keep the last);
- the RayService, a custom resource the library has no schema for: its pod templates against
  the core PodTemplate schema, the rest by reading it (KubeRay's ray.io/v1 fields, serveConfigV2);
- the security settings of every container of every pod template, the probes against the
  service's real routes, the settings through the real settings loader, and the Service, HPA,
  PDB and NetworkPolicies against the Deployment they serve;
- each check also rejects a deliberately broken copy, so none passes vacuously.
"""

from __future__ import annotations

import copy
import importlib
import importlib.resources
import json
import re
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from cleancut.config import Settings, env_var, load
from cleancut.errors import CleancutError
from cleancut.server import auth, drain, ops

pytestmark = pytest.mark.disable_socket  # offline: the schemas ship inside the package

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
# The newest release kubernetes-validate 1.37.0 ships schemas for.
KUBERNETES_VERSION = "1.37.0"
# Applied on its own (it needs the KubeRay operator), so not in kustomization.yaml.
NOT_IN_KUSTOMIZATION = {"rayservice.yaml"}
SETTINGS = {env_var(name) for name in Settings.model_fields}

Doc = dict[str, Any]


# --- loading ------------------------------------------------------------------------------------
class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys; the API server's decoder refuses them."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_documents(text: str) -> list[Doc]:
    return [doc for doc in yaml.load_all(text, Loader=_UniqueKeyLoader) if doc is not None]


def manifest_files() -> list[Path]:
    return sorted(K8S.glob("*.yaml"))


@cache
def _documents(name: str) -> tuple[Doc, ...]:
    return tuple(load_documents((K8S / name).read_text()))


def documents(name: str) -> list[Doc]:
    """The documents of one file, a fresh copy each time (tests mutate them)."""
    return copy.deepcopy(list(_documents(name)))


def resources() -> list[tuple[str, Doc]]:
    """(file, document) for every Kubernetes object, the Kustomization left out."""
    return [(path.name, doc) for path in manifest_files() for doc in documents(path.name)
            if doc.get("kind") != "Kustomization"]


def one(kind: str, name: str | None = None) -> Doc:
    found = [doc for _, doc in resources()
             if doc["kind"] == kind and name in (None, doc["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def deployment() -> Doc:
    return one("Deployment", "cleancut")


def rayservice() -> Doc:
    return one("RayService", "cleancut-ray")


def pod_templates(doc: Doc) -> Iterator[tuple[str, Doc]]:
    """(label, PodTemplateSpec) of every pod the object creates."""
    if doc["kind"] == "Deployment":
        yield f"deployment/{doc['metadata']['name']}", doc["spec"]["template"]
    elif doc["kind"] == "RayService":
        cluster = doc["spec"]["rayClusterConfig"]
        yield "rayservice/head", cluster["headGroupSpec"]["template"]
        for group in cluster.get("workerGroupSpecs", []):
            yield f"rayservice/worker:{group['groupName']}", group["template"]


def all_pod_templates() -> list[tuple[str, Doc]]:
    return [t for _, doc in resources() for t in pod_templates(doc)]


def env_of(container: Doc) -> dict[str, Doc]:
    return {entry["name"]: entry for entry in container.get("env", [])}


def env_values(container: Doc) -> dict[str, str]:
    return {name: entry["value"] for name, entry in env_of(container).items() if "value" in entry}


def service_container(template: Doc) -> Doc:
    (container,) = [c for c in template["spec"]["containers"] if c["name"] == "cleancut"]
    return container


# --- the Dockerfile's promises the manifests rely on --------------------------------------------
@cache
def dockerfile() -> dict[str, str]:
    """USER, EXPOSE and the ENV of the runtime stage (the last one)."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    runtime = text.rsplit("\nFROM ", 1)[1]
    found = {"USER": re.findall(r"^USER\s+(\S+)", runtime, re.M)[-1],
             "EXPOSE": re.findall(r"^EXPOSE\s+(\d+)", runtime, re.M)[-1]}
    for block in re.findall(r"^ENV\s+(.*)$", runtime, re.M):
        found.update(re.findall(r"(\w+)=(\S+)", block))
    return found


def image_user() -> tuple[int, int]:
    uid, _, gid = dockerfile()["USER"].partition(":")
    return int(uid), int(gid)


# --- quantities ---------------------------------------------------------------------------------
_QUANTITY = re.compile(
    r"([+-]?(?:\d+(?:\.\d*)?|\.\d+))(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?")
_SCALE = {None: 1.0, "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
          "P": 1e15, "E": 1e18, "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40,
          "Pi": 2.0**50, "Ei": 2.0**60}


def quantity(value: str | int | float) -> float:
    """A Kubernetes quantity ("1536Mi", "500m", "2") as a number; the schema does not check
    their syntax (a string or a number passes), the API server does."""
    if isinstance(value, bool):
        raise ValueError(f"not a quantity: {value!r}")
    if isinstance(value, int | float):
        return float(value)
    match = _QUANTITY.fullmatch(value)
    if match is None:
        raise ValueError(f"not a quantity: {value!r}")
    number, suffix = match.groups()
    if suffix and suffix[0] in "eE":
        return float(number + suffix)
    return float(number) * _SCALE[suffix]


def test_quantities_parse_as_the_api_server_reads_them() -> None:
    assert quantity("1536Mi") == 1536 * 2**20
    assert quantity("3Gi") == 3 * 2**30 and quantity("2") == 2 and quantity("500m") == 0.5
    assert quantity("1e3") == 1000 and quantity(2) == 2
    for bad in ("3 GB", "3GB", "1.5.0", "", "Gi", True):
        with pytest.raises(ValueError):
            quantity(bad)  # type: ignore[arg-type]


# --- (1) schemas --------------------------------------------------------------------------------
def _schema_dir() -> Any:
    return (importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema"
            / f"v{KUBERNETES_VERSION}-local-strict")


@cache
def _definitions() -> dict[str, Any]:
    defs: dict[str, Any] = json.loads((_schema_dir() / "_definitions.json").read_text())["$defs"]
    return defs


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = _definitions()[node["$ref"].rsplit("/$defs/", 1)[1]]
    return node


_DEPRECATED = re.compile(r"\bdeprecated\b", re.I)


def annotation_findings(doc: Doc) -> list[str]:
    """What the JSON schema leaves to the API server's warnings and merge logic: fields whose
    description says they are deprecated, and duplicate keys in lists merged by key
    (x-kubernetes-list-map-keys, e.g. two env entries of one name) or sets."""
    api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", doc["apiVersion"])
    top = json.loads((_schema_dir() / f"{doc['kind'].lower()}-{api}.json").read_text())
    findings: list[str] = []

    def walk(schema: dict[str, Any], value: Any, path: str) -> None:
        schema = _resolve(schema)
        if isinstance(value, dict):
            properties = schema.get("properties", {})
            extra = schema.get("additionalProperties")
            for key, item in value.items():
                if key in properties:
                    if _DEPRECATED.search(properties[key].get("description", "")):
                        findings.append(f"{path}.{key}: deprecated")
                    walk(properties[key], item, f"{path}.{key}")
                elif isinstance(extra, dict):
                    walk(extra, item, f"{path}.{key}")
        elif isinstance(value, list):
            kind = schema.get("x-kubernetes-list-type")
            keys = schema.get("x-kubernetes-list-map-keys")
            if kind == "map" and keys:
                seen = [tuple(str(i.get(k)) for k in keys) for i in value if isinstance(i, dict)]
                findings.extend(f"{path}: duplicate {dict(zip(keys, s, strict=True))}"
                                for n, s in enumerate(seen) if s in seen[:n])
            elif kind == "set":
                items = [json.dumps(i, sort_keys=True) for i in value]
                findings.extend(f"{path}: duplicate {i}" for n, i in enumerate(items)
                                if i in items[:n])
            for n, item in enumerate(value):
                walk(schema.get("items", {}), item, f"{path}[{n}]")

    walk(top, doc, doc["kind"])
    return findings


def schema_problems(doc: Doc) -> list[str]:
    """Everything kubernetes-validate (strict) and the annotations find; [] when clean. The
    library's warnings are exceptions from validate() (SchemaNotFoundError: this release does
    not serve that apiVersion/kind), so they land here as problems too."""
    try:
        version = kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{'.'.join(map(str, exc.path))}: {exc.message}"]
    except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as exc:
        return [exc.message]
    assert version == KUBERNETES_VERSION.rsplit(".", 1)[0]  # the pinned release, no fallback
    return annotation_findings(doc)


CUSTOM_GROUPS = {"ray.io"}  # KubeRay's; the library ships core Kubernetes schemas only


def is_custom_resource(doc: Doc) -> bool:
    return doc["apiVersion"].split("/")[0] in CUSTOM_GROUPS


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: p.name)
def test_every_manifest_parses_without_duplicate_keys(path: Path) -> None:
    docs = load_documents(path.read_text())
    assert docs, f"{path.name} holds no document"
    for doc in docs:
        assert {"apiVersion", "kind"} <= doc.keys(), path.name
        if doc["kind"] != "Kustomization":  # a kustomize file, not an API object
            assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"])


def test_the_loader_refuses_a_duplicate_key() -> None:
    with pytest.raises(yaml.constructor.ConstructorError, match="duplicate key 'name'"):
        load_documents("metadata:\n  name: a\n  name: b\n")


_CORE = [r for r in resources() if not is_custom_resource(r[1])]


@pytest.mark.parametrize(("name", "doc"), _CORE,
                         ids=[f"{n}:{d['kind']}/{d['metadata']['name']}" for n, d in _CORE])
def test_manifest_validates_against_the_kubernetes_schema(name: str, doc: Doc) -> None:
    assert schema_problems(doc) == []


def _set(path: str, value: Any) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value
    return mutate


_C0 = "spec.template.spec.containers.0"


@pytest.mark.parametrize(("mutate", "expected"), [
    (_set(f"{_C0}.securityContext.readOnlyRootFS", True), "'readOnlyRootFS' was unexpected"),
    (_set("spec.template.spec.hostname_", "x"), "'hostname_' was unexpected"),
    (_set(f"{_C0}.env.1.value", 5000), "5000 is not of type 'string'"),
    (_set("apiVersion", "extensions/v1beta1"), "Couldn't find schema for kind Deployment"),
    (_set("spec.template.spec.serviceAccount", "default"), "serviceAccount: deprecated"),
    (_set(f"{_C0}.env.2", {"name": "CLEANCUT_HOST", "value": "::"}), "duplicate {'name'"),
], ids=["unknown-field", "unknown-pod-field", "int-env-value", "removed-api-version",
        "deprecated-field", "duplicate-env"])
def test_schema_check_rejects_a_broken_deployment(mutate: Callable[[Doc], None],
                                                  expected: str) -> None:
    broken = deployment()
    mutate(broken)
    problems = schema_problems(broken)
    assert any(expected in p for p in problems), problems


def test_the_pinned_release_is_one_the_library_ships() -> None:
    assert KUBERNETES_VERSION in kubernetes_validate.utils.all_versions()
    assert _schema_dir().is_dir()
    with pytest.raises(kubernetes_validate.utils.VersionNotSupportedError):
        kubernetes_validate.validate(deployment(), "1.99.0", strict=True)


# --- (1b) the RayService: a custom resource --------------------------------------------------
def test_the_library_has_no_schema_for_the_rayservice() -> None:
    """If a future kubernetes-validate ships KubeRay's schema, validate the whole object with it
    instead of the checks below."""
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        kubernetes_validate.validate(rayservice(), KUBERNETES_VERSION, strict=True)


def as_pod_template(label: str, template: Doc) -> Doc:
    """A PodTemplateSpec wrapped as the core kind PodTemplate, so the core schema checks it."""
    name = re.sub(r"[^a-z0-9-]", "-", label)
    return {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": name},
            "template": template}


@pytest.mark.parametrize(("label", "template"), list(pod_templates(rayservice())),
                         ids=[label for label, _ in pod_templates(rayservice())])
def test_ray_pod_templates_validate_as_core_pod_templates(label: str, template: Doc) -> None:
    assert schema_problems(as_pod_template(label, template)) == []


def test_a_broken_ray_pod_template_is_rejected() -> None:
    (_, head), *_ = pod_templates(rayservice())
    head["spec"]["containers"][0]["resources"]["limit"] = {"cpu": "1"}  # "limits"
    problems = schema_problems(as_pod_template("head", head))
    assert any("'limit' was unexpected" in p for p in problems), problems


# KubeRay's ray.io/v1 fields (ray-operator/apis/ray/v1: RayServiceSpec, RayClusterSpec,
# HeadGroupSpec, WorkerGroupSpec). The two deprecated RayServiceSpec thresholds are left out.
RAYSERVICE_SPEC = {"serveConfigV2", "rayClusterConfig", "serveService", "upgradeStrategy",
                   "excludeHeadPodFromServeSvc", "rayClusterDeletionDelaySeconds"}
RAYCLUSTER_SPEC = {"headGroupSpec", "workerGroupSpecs", "rayVersion", "enableInTreeAutoscaling",
                   "autoscalerOptions", "headServiceAnnotations", "suspend", "managedBy",
                   "gcsFaultToleranceOptions", "authOptions"}
HEAD_GROUP = {"serviceType", "headService", "enableIngress", "rayStartParams", "template"}
WORKER_GROUP = {"groupName", "replicas", "minReplicas", "maxReplicas", "numOfHosts",
                "rayStartParams", "template", "scaleStrategy", "idleTimeoutSeconds", "suspend"}
# Ray Serve's config file (ServeDeploySchema, ServeApplicationSchema, HTTPOptionsSchema).
SERVE_CONFIG = {"proxy_location", "http_options", "grpc_options", "logging_config",
                "applications", "target_capacity"}
SERVE_APPLICATION = {"name", "route_prefix", "import_path", "runtime_env", "deployments", "args",
                     "logging_config", "external_scaler_enabled"}
SERVE_HTTP = {"host", "port", "root_path", "request_timeout_s", "keep_alive_timeout_s"}


def rayservice_problems(doc: Doc) -> list[str]:
    problems: list[str] = []

    def keys(where: str, node: Doc, allowed: set[str],
             required: frozenset[str] | set[str] = frozenset()) -> None:
        problems.extend(f"{where}: unknown field {k!r}" for k in sorted(node.keys() - allowed))
        problems.extend(f"{where}: missing {k!r}" for k in sorted(required - node.keys()))

    if (doc["apiVersion"], doc["kind"]) != ("ray.io/v1", "RayService"):
        problems.append(f"not a ray.io/v1 RayService: {doc['apiVersion']} {doc['kind']}")
    keys("RayService", doc, {"apiVersion", "kind", "metadata", "spec"}, {"spec"})
    spec = doc["spec"]
    keys("spec", spec, RAYSERVICE_SPEC, {"serveConfigV2", "rayClusterConfig"})
    cluster = spec["rayClusterConfig"]
    keys("rayClusterConfig", cluster, RAYCLUSTER_SPEC, {"headGroupSpec", "rayVersion"})
    head = cluster["headGroupSpec"]
    keys("headGroupSpec", head, HEAD_GROUP, {"rayStartParams", "template"})
    groups = cluster.get("workerGroupSpecs", [])
    if not groups:
        problems.append("no worker group: cleancut's replicas run on the workers")
    for group in groups:
        keys(f"workerGroupSpecs[{group.get('groupName')}]", group, WORKER_GROUP,
             {"groupName", "template"})
        low, high = group.get("minReplicas", 0), group.get("maxReplicas", 2**31 - 1)
        if not low <= group.get("replicas", low) <= high:
            problems.append(f"{group['groupName']}: replicas outside [minReplicas, maxReplicas]")
    names = [g.get("groupName") for g in groups]
    if len(set(names)) != len(names):
        problems.append(f"worker group names repeat: {names}")
    # rayStartParams is map[string]string: the API server refuses a number or a boolean.
    for where, params in [("head", head["rayStartParams"])] + [
            (g["groupName"], g.get("rayStartParams", {})) for g in groups]:
        problems.extend(f"{where}: rayStartParams.{k} is not a string"
                        for k, v in params.items() if not isinstance(v, str))
    if not isinstance(cluster["rayVersion"], str) or not re.fullmatch(
            r"\d+\.\d+\.\d+", cluster["rayVersion"]):
        problems.append("rayVersion is not a quoted x.y.z")
    elif tuple(map(int, cluster["rayVersion"].split("."))) < (2, 52, 0):
        problems.append("token authentication needs Ray 2.52 or newer")

    config = yaml.safe_load(spec["serveConfigV2"])  # a YAML document inside a string
    keys("serveConfigV2", config, SERVE_CONFIG, {"applications"})
    keys("serveConfigV2.http_options", config.get("http_options", {}), SERVE_HTTP)
    apps = config["applications"]
    for app in apps:
        keys(f"application {app.get('name')}", app, SERVE_APPLICATION, {"name", "import_path"})
    if [a["import_path"] for a in apps] != ["cleancut.ray:app"]:
        problems.append(f"expected one application, cleancut.ray:app: {apps}")
    if config.get("proxy_location", "EveryNode") not in {"Disabled", "HeadOnly", "EveryNode"}:
        problems.append(f"proxy_location {config['proxy_location']!r}")
    port = config.get("http_options", {}).get("port", 8000)
    for label, template in pod_templates(doc):
        ray = template["spec"]["containers"][0]  # KubeRay runs Ray in the first container
        serve = [p["containerPort"] for p in ray.get("ports", []) if p.get("name") == "serve"]
        if label != "rayservice/head" and serve != [port]:
            problems.append(f"{label}: no port named 'serve' = http_options.port {port}")
        env = env_of(ray)
        if env.get("RAY_USAGE_STATS_ENABLED", {}).get("value") != "0":
            problems.append(f"{label}: RAY_USAGE_STATS_ENABLED is not 0")
        if env.get("RAY_AUTH_MODE", {}).get("value") != "token":
            problems.append(f"{label}: RAY_AUTH_MODE is not token")
        token = env.get("RAY_AUTH_TOKEN", {})
        if "value" in token or "secretKeyRef" not in token.get("valueFrom", {}):
            problems.append(f"{label}: RAY_AUTH_TOKEN does not come from a Secret")
    return problems


def test_the_rayservice_is_well_formed() -> None:
    assert rayservice_problems(rayservice()) == []


@pytest.mark.parametrize(("mutate", "expected"), [
    (_set("spec.rayClusterConfig.headGroupSpec.rayStartParams.num-cpus", 0), "not a string"),
    (_set("spec.rayClusterConfig.workerGroupSpecs.0.replica", 2), "unknown field 'replica'"),
    (_set("spec.serviceUnhealthySecondThreshold", 900), "unknown field"),
    (_set("spec.serveConfigV2", "applications:\n- name: x\n  import_path: other:app\n"),
     "cleancut.ray:app"),
    (_set("spec.rayClusterConfig.rayVersion", "2.40.0"), "2.52"),
    (_set("spec.rayClusterConfig.workerGroupSpecs.0.template.spec.containers.0.env.2",
          {"name": "RAY_AUTH_TOKEN", "value": "in-the-manifest"}), "does not come from a Secret"),
], ids=["int-start-param", "unknown-group-field", "deprecated-threshold", "other-app",
        "old-ray", "inline-token"])
def test_rayservice_check_rejects_a_broken_copy(mutate: Callable[[Doc], None],
                                                expected: str) -> None:
    broken = rayservice()
    mutate(broken)
    problems = rayservice_problems(broken)
    assert any(expected in p for p in problems), problems


def ray_settings_problems(doc: Doc) -> list[str]:
    """The Ray containers' CLEANCUT_* values through the real loader, and the replicas they ask
    for against the worker pods that must hold them."""
    problems: list[str] = []
    loaded: dict[str, Settings] = {}
    for label, template in pod_templates(doc):
        ray = template["spec"]["containers"][0]
        env = {k: v for k, v in env_values(ray).items() if k.startswith("CLEANCUT_")}
        try:
            loaded[label] = load(env)
        except CleancutError as exc:
            problems.append(f"{label}: {exc}")
    if problems:
        return problems
    cluster = doc["spec"]["rayClusterConfig"]
    if cluster["headGroupSpec"]["rayStartParams"].get("num-cpus") != "0":
        problems.append("head: num-cpus is not 0 (replicas would land on the control plane)")
    capacity = 0
    for group in cluster["workerGroupSpecs"]:
        settings = loaded[f"rayservice/worker:{group['groupName']}"]
        ray = group["template"]["spec"]["containers"][0]
        node_cpus = float(group["rayStartParams"].get("num-cpus", "0"))
        if node_cpus > quantity(ray["resources"]["limits"]["cpu"]):
            problems.append(f"{group['groupName']}: num-cpus above the pod's CPU limit")
        if settings.ray_replica_cpus > node_cpus:
            problems.append(f"{group['groupName']}: a replica ({settings.ray_replica_cpus} CPUs) "
                            f"fits on no worker ({node_cpus} CPUs)")
        if settings.workers * settings.intra_op_threads > settings.ray_replica_cpus:
            problems.append(f"{group['groupName']}: workers × threads above the replica's CPUs")
        grace = group["template"]["spec"]["terminationGracePeriodSeconds"]
        if grace <= settings.shutdown_grace_s:
            problems.append(f"{group['groupName']}: grace period within the drain")
        capacity += group.get("replicas", 0) * int(node_cpus // settings.ray_replica_cpus)
    # The builder runs on any node and reads its own node's variables: they must agree.
    if len({s.model_dump_json() for s in loaded.values()}) != 1:
        problems.append("the Ray containers' CLEANCUT_* values differ")
    settings = next(iter(loaded.values()))
    wanted = settings.ray_serve_max_replicas or settings.ray_serve_replicas
    if wanted > capacity:
        problems.append(f"{wanted} replicas wanted, room for {capacity} on the worker pods")
    return problems


def test_the_ray_settings_load_and_the_replicas_fit() -> None:
    assert ray_settings_problems(rayservice()) == []


def test_the_serve_import_path_is_an_application_builder() -> None:
    """Importing cleancut.ray imports no Ray, so this runs without it."""
    config = yaml.safe_load(rayservice()["spec"]["serveConfigV2"])
    (app,) = config["applications"]
    module, _, name = app["import_path"].partition(":")
    assert callable(getattr(importlib.import_module(module), name))


def _ray_env(name: str, value: str) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        group = doc["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
        env_of(group["template"]["spec"]["containers"][0])[name]["value"] = value
    return mutate


@pytest.mark.parametrize(("mutate", "expected"), [
    (_ray_env("CLEANCUT_RAY_REPLICA_CPUS", "4"), "fits on no worker"),
    (_ray_env("CLEANCUT_RAY_SERVE_REPLICAS", "5"), "5 replicas wanted, room for 2"),
    (_ray_env("CLEANCUT_WORKERS", "4"), "workers × threads"),
    (_ray_env("CLEANCUT_WORKERS", "two"), "CLEANCUT_WORKERS"),
    (_set("spec.rayClusterConfig.headGroupSpec.rayStartParams.num-cpus", "2"), "head"),
    (_set("spec.rayClusterConfig.headGroupSpec.template.spec.containers.0.env",
          [{"name": "CLEANCUT_MODEL_DIR", "value": "/models"}]), "values differ"),
], ids=["replica-too-big", "too-many-replicas", "too-many-workers", "malformed", "head-cpus",
        "head-env-differs"])
def test_ray_settings_check_rejects_a_broken_copy(mutate: Callable[[Doc], None],
                                                  expected: str) -> None:
    broken = rayservice()
    mutate(broken)
    problems = ray_settings_problems(broken)
    assert any(expected in p for p in problems), problems


# --- (2) security, every container of every pod template -------------------------------------
def _effective(container: Doc, pod: Doc, key: str) -> Any:
    """A container's securityContext field, or the pod's when the container leaves it out."""
    own = container.get("securityContext", {})
    return own[key] if key in own else pod.get("securityContext", {}).get(key)


def pod_problems(template: Doc) -> list[str]:
    spec = template["spec"]
    problems = [f"pod: {flag} is set" for flag in ("hostNetwork", "hostPID", "hostIPC")
                if spec.get(flag)]
    if spec.get("automountServiceAccountToken") is not False:
        problems.append("pod: automountServiceAccountToken is not false")
    if spec.get("enableServiceLinks") is not False:
        problems.append("pod: enableServiceLinks is not false (CLEANCUT_PORT=tcp://...)")
    problems += [f"pod: volume {v['name']} is a hostPath" for v in spec.get("volumes", [])
                 if "hostPath" in v]
    for container in spec.get("initContainers", []) + spec["containers"]:
        problems += [f"{container['name']}: {p}" for p in container_problems(container, spec)]
    return problems


def container_problems(container: Doc, pod: Doc) -> list[str]:
    sc = container.get("securityContext", {})
    problems = []
    if sc.get("readOnlyRootFilesystem") is not True:
        problems.append("readOnlyRootFilesystem is not true")
    if sc.get("allowPrivilegeEscalation") is not False:
        problems.append("allowPrivilegeEscalation is not false")
    if sc.get("privileged"):
        problems.append("privileged")
    caps = sc.get("capabilities", {})
    if caps.get("drop") != ["ALL"] or caps.get("add"):
        problems.append(f"capabilities are not drop: [ALL] alone: {caps}")
    if _effective(container, pod, "runAsNonRoot") is not True:
        problems.append("runAsNonRoot is not true")
    uid, gid = image_user()
    if (_effective(container, pod, "runAsUser"), _effective(container, pod, "runAsGroup")) != (
            uid, gid):
        problems.append(f"runAsUser/runAsGroup are not the image's {uid}:{gid}")
    if (_effective(container, pod, "seccompProfile") or {}).get("type") != "RuntimeDefault":
        problems.append("seccompProfile is not RuntimeDefault")
    resources = container.get("resources", {})
    for resource in ("cpu", "memory"):
        request = resources.get("requests", {}).get(resource)
        limit = resources.get("limits", {}).get(resource)
        if request is None or limit is None:
            problems.append(f"{resource}: requests and limits are not both set")
        elif quantity(limit) < quantity(request):
            problems.append(f"{resource}: limit under request")
    # KubeRay adds probes that run wget (not in the image) where a container has none.
    problems += [f"no {p}" for p in ("readinessProbe", "livenessProbe") if p not in container]
    problems += mount_problems(container, pod)
    return problems


def mount_problems(container: Doc, pod: Doc) -> list[str]:
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    env = env_values(container)
    problems = []
    mounts = {m["mountPath"]: m for m in container.get("volumeMounts", [])}
    for path, mount in mounts.items():
        volume = volumes.get(mount["name"])
        if volume is None:
            problems.append(f"{path}: no volume {mount['name']}")
        elif "emptyDir" in volume:
            if "sizeLimit" not in volume["emptyDir"]:
                problems.append(f"{path}: emptyDir without sizeLimit")
            else:
                quantity(volume["emptyDir"]["sizeLimit"])
        elif mount.get("readOnly") is not True:
            problems.append(f"{path}: writable, and not an emptyDir")
    # The temporary folder: set, and an emptyDir mounted exactly there (the root is read-only).
    tmp = env.get("CLEANCUT_TMP_DIR")
    if tmp is None:
        problems.append("CLEANCUT_TMP_DIR is not set")
    elif tmp not in mounts or "emptyDir" not in volumes.get(mounts[tmp]["name"], {}):
        problems.append(f"CLEANCUT_TMP_DIR {tmp} is not an emptyDir mount")
    if env.get("TMPDIR", tmp) != tmp:
        problems.append("TMPDIR is not CLEANCUT_TMP_DIR")
    # The weights are baked into the image (the Dockerfile pulls and verifies them): nothing is
    # mounted over them and nothing makes them writable.
    model_dir = env.get("CLEANCUT_MODEL_DIR")
    if model_dir != dockerfile()["CLEANCUT_MODEL_DIR"]:
        problems.append(f"CLEANCUT_MODEL_DIR {model_dir} is not the image's")
    elif any(p == model_dir or p.startswith(model_dir + "/") for p in mounts):
        problems.append(f"something is mounted over {model_dir}")
    return problems


@pytest.mark.parametrize(("label", "template"), all_pod_templates(),
                         ids=[label for label, _ in all_pod_templates()])
def test_every_pod_is_locked_down(label: str, template: Doc) -> None:
    assert pod_problems(template) == []


def _in_deployment(path: str, value: Any) -> Callable[[Doc], None]:
    return _set(f"spec.template.spec.{path}", value)


@pytest.mark.parametrize(("mutate", "expected"), [
    (_in_deployment("containers.0.securityContext.readOnlyRootFilesystem", False),
     "readOnlyRootFilesystem"),
    (_in_deployment("containers.0.securityContext.allowPrivilegeEscalation", True),
     "allowPrivilegeEscalation"),
    (_in_deployment("containers.0.securityContext.capabilities", {"drop": ["ALL"],
                                                                   "add": ["NET_RAW"]}),
     "capabilities"),
    (_in_deployment("containers.0.securityContext.privileged", True), "privileged"),
    (_in_deployment("containers.0.securityContext.runAsUser", 0), "runAsUser"),
    (_in_deployment("containers.0.securityContext.runAsNonRoot", False), "runAsNonRoot"),
    (_in_deployment("containers.0.securityContext.seccompProfile", {"type": "Unconfined"}),
     "seccompProfile"),
    (_in_deployment("containers.0.resources", {"requests": {"cpu": "2", "memory": "1Gi"}}),
     "requests and limits"),
    (_in_deployment("containers.0.volumeMounts.0.mountPath", "/tmp/other"),
     "CLEANCUT_TMP_DIR /tmp/cleancut is not an emptyDir mount"),
    (_in_deployment("volumes.0.emptyDir", {}), "without sizeLimit"),
    (_in_deployment("containers.0.volumeMounts.1.readOnly", False), "writable"),
    (_in_deployment("automountServiceAccountToken", True), "automountServiceAccountToken"),
    (_in_deployment("enableServiceLinks", True), "enableServiceLinks"),
    (_in_deployment("hostNetwork", True), "hostNetwork"),
], ids=["rw-root", "escalation", "cap-add", "privileged", "root-uid", "may-be-root", "seccomp",
        "no-limits", "tmp-not-mounted", "tmp-unbounded", "rw-secret", "sa-token",
        "service-links", "host-network"])
def test_security_check_rejects_a_broken_copy(mutate: Callable[[Doc], None],
                                              expected: str) -> None:
    broken = deployment()
    mutate(broken)
    problems = pod_problems(broken["spec"]["template"])
    assert any(expected in p for p in problems), problems


# --- the Deployment's service container ---------------------------------------------------------
def _port(container: Doc, port: int | str) -> int:
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container["ports"] if p.get("name") == port]
    return int(number)


def probe_problems(container: Doc) -> list[str]:
    routes = {route.path for route in ops.router.routes}  # type: ignore[attr-defined]
    expected = {"startupProbe": "/readyz", "readinessProbe": "/readyz", "livenessProbe": "/healthz"}
    port = int(env_values(container)["CLEANCUT_PORT"])
    problems = []
    for probe, path in expected.items():
        get = container.get(probe, {}).get("httpGet")
        if get is None:
            problems.append(f"{probe}: no httpGet")
            continue
        if get["path"] != path:
            problems.append(f"{probe}: {get['path']} is not {path}")
        if get["path"] not in routes:
            problems.append(f"{probe}: {get['path']} is no route of the service")
        if get["path"] not in auth.OPEN_PATHS:
            problems.append(f"{probe}: {get['path']} needs an API key; the kubelet has none")
        if _port(container, get["port"]) != port:
            problems.append(f"{probe}: port is not CLEANCUT_PORT {port}")
    return problems


def test_the_probes_ask_the_services_real_routes() -> None:
    assert probe_problems(service_container(deployment()["spec"]["template"])) == []
    # Liveness must keep passing while draining (or the kubelet kills the pod mid-drain), and
    # readiness must fail then (so the pod leaves the Service).
    assert "/healthz" in drain._ALWAYS_OPEN and "/readyz" not in drain._ALWAYS_OPEN


@pytest.mark.parametrize(("probe", "path", "value", "expected"), [
    ("readinessProbe", "httpGet.path", "/healthz", "is not /readyz"),
    ("livenessProbe", "httpGet.path", "/livez", "no route"),
    ("livenessProbe", "httpGet.path", "/metrics", "is not /healthz"),
    ("startupProbe", "httpGet.port", 8080, "port is not"),
    ("startupProbe", "httpGet", None, "no httpGet"),
])
def test_probe_check_rejects_a_broken_copy(probe: str, path: str, value: Any,
                                           expected: str) -> None:
    container = service_container(deployment()["spec"]["template"])
    _set(f"{probe}.{path}", value)(container)
    if value is None:
        del container[probe]["httpGet"]
    problems = probe_problems(container)
    assert any(expected in p for p in problems), problems


def service_settings(container: Doc, key_file: Path) -> Settings:
    """The container's CLEANCUT_* values through the real loader, the key file made local."""
    env = {k: v for k, v in env_values(container).items() if k.startswith("CLEANCUT_")}
    env["CLEANCUT_API_KEYS_FILE"] = str(key_file)
    return load(env)


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "api_keys"
    path.write_text("# one entry a line\nci:sha256:" + "ab" * 32 + "\n")
    return path


def test_the_service_starts_with_these_settings(key_file: Path) -> None:
    template = deployment()["spec"]["template"]
    container = service_container(template)
    env = env_values(container)
    assert env_of(container)["CLEANCUT_API_KEYS_FILE"]["value"].startswith(
        next(m["mountPath"] for m in container["volumeMounts"] if m["name"] == "api-keys") + "/")
    settings = service_settings(container, key_file)
    assert not auth.is_loopback(settings.host)  # reachable through the Service...
    assert len(auth.check_exposure(settings)) == 1  # ...which start-up allows with keys only
    assert settings.port == container["ports"][0]["containerPort"] == int(dockerfile()["EXPOSE"])
    assert str(settings.model_dir) == dockerfile()["CLEANCUT_MODEL_DIR"]
    assert str(settings.tmp_dir) == env["TMPDIR"] == dockerfile()["CLEANCUT_TMP_DIR"]
    assert not settings.url_fetch_enabled  # the NetworkPolicy allows no egress
    cpus = quantity(container["resources"]["limits"]["cpu"])
    assert 1 <= settings.workers * settings.intra_op_threads <= cpus
    # Drain: in-flight requests (each within its deadline) finish before SIGKILL.
    pause = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    assert settings.shutdown_grace_s >= settings.request_timeout_s
    assert template["spec"]["terminationGracePeriodSeconds"] > pause + settings.shutdown_grace_s
    # The image compose.yaml builds and runs.
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    assert container["image"] == compose["services"]["cleancut"]["image"]


def test_without_the_key_file_start_up_refuses_to_listen(key_file: Path) -> None:
    container = service_container(deployment()["spec"]["template"])
    container["env"] = [e for e in container["env"] if e["name"] != "CLEANCUT_API_KEYS_FILE"]
    settings = service_settings(container, key_file).model_copy(update={"api_keys_file": None})
    with pytest.raises(CleancutError, match="without API keys"):
        auth.check_exposure(settings)


def test_a_malformed_setting_in_the_manifest_is_caught(key_file: Path) -> None:
    container = service_container(deployment()["spec"]["template"])
    env_of(container)["CLEANCUT_WORKERS"]["value"] = "two"
    with pytest.raises(CleancutError, match="CLEANCUT_WORKERS"):
        service_settings(container, key_file)


def _memory_budget_mib() -> int:
    """tests/server/test_memory.py's BUDGET_MB: the peak it lets the service reach (MiB)."""
    text = (ROOT / "tests" / "server" / "test_memory.py").read_text()
    return int(re.search(r"^BUDGET_MB = ([\d_]+)", text, re.M).group(1))  # type: ignore[union-attr]


def test_resources_are_sized_from_the_memory_measurement() -> None:
    container = service_container(deployment()["spec"]["template"])
    limits, requests = container["resources"]["limits"], container["resources"]["requests"]
    budget = _memory_budget_mib() * 2**20
    assert quantity(limits["memory"]) >= budget  # what passes the memory test is never OOM-killed
    assert quantity(requests["memory"]) >= 1.29e9  # resident after the first inferences
    assert quantity(requests["cpu"]) >= 2  # two workers, one thread each
    # A Ray worker runs one such replica, plus the raylet and the object store in /dev/shm.
    for label, template in pod_templates(rayservice()):
        if label.startswith("rayservice/worker"):
            ray = template["spec"]["containers"][0]
            shm = next(v for v in template["spec"]["volumes"] if v["name"] == "shm")
            assert quantity(ray["resources"]["limits"]["memory"]) >= budget + quantity(
                shm["emptyDir"]["sizeLimit"])


def test_the_hpa_owns_the_replica_count() -> None:
    assert "replicas" not in deployment()["spec"]  # a re-apply would reset the HPA's count


# --- the objects around the Deployment ----------------------------------------------------------
def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and selector.items() <= labels.items()


def around_problems(objects: dict[str, Doc]) -> list[str]:
    """The Service, HPA, PDB and NetworkPolicy against the Deployment they serve."""
    dep, svc, hpa, pdb, policy = (objects[k] for k in ("Deployment", "Service",
                                                       "HorizontalPodAutoscaler",
                                                       "PodDisruptionBudget", "NetworkPolicy"))
    labels = dep["spec"]["template"]["metadata"]["labels"]
    selector = dep["spec"]["selector"]["matchLabels"]
    container = service_container(dep["spec"]["template"])
    port = int(env_values(container)["CLEANCUT_PORT"])
    problems = []
    if not _selects(selector, labels):
        problems.append("Deployment: its selector does not match its pods")
    # Service
    if svc["spec"].get("type", "ClusterIP") != "ClusterIP":
        problems.append("Service: not ClusterIP")
    if not _selects(svc["spec"]["selector"], labels):
        problems.append("Service: selector does not match the pods")
    for p in svc["spec"]["ports"]:
        if _port(container, p.get("targetPort", p["port"])) != port:
            problems.append(f"Service: port {p['port']} does not reach container port {port}")
    if [p["port"] for p in svc["spec"]["ports"]] != [80]:
        problems.append("Service: not port 80")
    # HPA
    target = hpa["spec"]["scaleTargetRef"]
    if (target["apiVersion"], target["kind"], target["name"]) != (
            dep["apiVersion"], dep["kind"], dep["metadata"]["name"]):
        problems.append(f"HPA: scales {target}, not the Deployment")
    metrics = [(m["type"], m.get("resource", {}).get("name"),
                m.get("resource", {}).get("target", {}).get("type"))
               for m in hpa["spec"]["metrics"]]
    if ("Resource", "cpu", "Utilization") not in metrics:
        problems.append("HPA: no CPU utilisation target")
    low, high = hpa["spec"].get("minReplicas", 1), hpa["spec"]["maxReplicas"]
    if not 2 <= low <= high:
        problems.append("HPA: fewer than two replicas, or min above max")
    # PDB
    if pdb["spec"]["selector"].get("matchLabels") != selector:
        problems.append("PDB: does not select the Deployment's pods")
    if low - int(pdb["spec"].get("maxUnavailable", 1)) < 1:
        problems.append("PDB: a drain may take every pod at the HPA's minimum")
    # NetworkPolicy: ingress to the service port only, no egress at all.
    if not _selects(policy["spec"]["podSelector"].get("matchLabels", {}), labels):
        problems.append("NetworkPolicy: does not select the pods")
    if set(policy["spec"].get("policyTypes", [])) != {"Ingress", "Egress"}:
        problems.append("NetworkPolicy: policyTypes is not Ingress and Egress")
    if policy["spec"].get("egress"):
        problems.append("NetworkPolicy: egress is allowed")
    for rule in policy["spec"].get("ingress", []):
        ports = [_port(container, p["port"]) for p in rule.get("ports", []) if "port" in p]
        if not ports or set(ports) != {port}:
            problems.append(f"NetworkPolicy: ingress to {ports or 'every port'}, not {port}")
    return problems


def around() -> dict[str, Doc]:
    return {kind: one(kind, "cleancut") for kind in ("Deployment", "Service",
                                                    "HorizontalPodAutoscaler",
                                                    "PodDisruptionBudget", "NetworkPolicy")}


def test_service_hpa_pdb_and_policy_fit_the_deployment() -> None:
    assert around_problems(around()) == []


@pytest.mark.parametrize(("kind", "path", "value", "expected"), [
    ("Service", "spec.ports.0.targetPort", 8080, "does not reach container port"),
    ("Service", "spec.selector", {"app.kubernetes.io/name": "other"}, "Service: selector"),
    ("HorizontalPodAutoscaler", "spec.scaleTargetRef.name", "other", "HPA: scales"),
    ("HorizontalPodAutoscaler", "spec.metrics.0.resource.name", "memory", "no CPU"),
    ("PodDisruptionBudget", "spec.selector.matchLabels", {"app.kubernetes.io/name": "cleancut"},
     "PDB: does not select"),
    ("NetworkPolicy", "spec.egress", [{}], "egress is allowed"),
    ("NetworkPolicy", "spec.policyTypes", ["Ingress"], "policyTypes"),
    ("NetworkPolicy", "spec.ingress.0.ports", [], "every port"),
    ("NetworkPolicy", "spec.ingress.0.ports.0.port", 6379, "ingress to [6379]"),
], ids=["svc-port", "svc-selector", "hpa-target", "hpa-memory", "pdb-selector", "egress",
        "no-egress-type", "all-ports", "other-port"])
def test_around_check_rejects_a_broken_copy(kind: str, path: str, value: Any,
                                            expected: str) -> None:
    objects = around()
    _set(path, value)(objects[kind])
    problems = around_problems(objects)
    assert any(expected in p for p in problems), problems


def ray_policy_problems(policy: Doc, ray_labels: list[dict[str, str]],
                        other_labels: dict[str, str]) -> list[str]:
    """The Ray pods' policy: every Ray pod selected, nothing else; egress only to themselves
    and to DNS."""
    selector = policy["spec"]["podSelector"].get("matchLabels", {})
    problems = [f"does not select {labels}" for labels in ray_labels
                if not _selects(selector, labels)]
    if _selects(selector, other_labels):
        problems.append("selects the Deployment's pods too")
    if set(policy["spec"].get("policyTypes", [])) != {"Ingress", "Egress"}:
        problems.append("policyTypes is not Ingress and Egress")
    for rule in policy["spec"].get("egress", []):
        peers = rule.get("to", [])
        if not peers or any("ipBlock" in peer for peer in peers):
            problems.append(f"egress beyond the cluster's pods: {rule}")
        own = all(peer.get("podSelector", {}).get("matchLabels") == selector
                  and "namespaceSelector" not in peer for peer in peers)
        ports = {p.get("port") for p in rule.get("ports", [])}
        if not own and (not ports or ports != {53}):
            problems.append(f"egress to other pods beyond DNS: {rule}")
    return problems


def test_the_ray_pods_talk_only_among_themselves_and_to_dns() -> None:
    labels = [t["metadata"]["labels"] for _, t in pod_templates(rayservice())]
    other = deployment()["spec"]["template"]["metadata"]["labels"]
    policy = one("NetworkPolicy", "cleancut-ray")
    assert ray_policy_problems(policy, labels, other) == []
    assert not _selects(deployment()["spec"]["selector"]["matchLabels"], labels[0])
    broken = copy.deepcopy(policy)
    broken["spec"]["egress"].append({"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]})
    broken["spec"]["egress"][1]["ports"] = []
    problems = ray_policy_problems(broken, labels, other)
    assert any("beyond the cluster" in p for p in problems)
    assert any("beyond DNS" in p for p in problems)


# --- kustomization, secrets, settings -----------------------------------------------------------
KUSTOMIZATION_FIELDS = {"apiVersion", "kind", "resources", "namespace", "namePrefix", "nameSuffix",
                        "labels", "commonAnnotations", "images", "patches", "components",
                        "configMapGenerator", "secretGenerator", "replicas"}


def test_the_kustomization_names_every_manifest_once() -> None:
    (kustomization,) = documents("kustomization.yaml")
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kustomization["kind"] == "Kustomization"
    assert kustomization.keys() <= KUSTOMIZATION_FIELDS
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed))
    assert all((K8S / name).is_file() for name in listed), listed
    others = {p.name for p in manifest_files()} - {"kustomization.yaml"}
    assert set(listed) == others - NOT_IN_KUSTOMIZATION
    assert others >= NOT_IN_KUSTOMIZATION


def test_every_secret_referenced_is_created_in_the_readme() -> None:
    readme = (K8S / "README.md").read_text()
    wanted: set[tuple[str, str]] = set()
    for _, template in all_pod_templates():
        for volume in template["spec"].get("volumes", []):
            if "secret" in volume:
                wanted |= {(volume["secret"]["secretName"], item["key"])
                           for item in volume["secret"]["items"]}
        for container in template["spec"]["containers"]:
            for entry in container.get("env", []):
                ref = entry.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    wanted.add((ref["name"], ref["key"]))
    assert wanted
    for name, key in sorted(wanted):
        assert re.search(rf"kubectl create secret generic {name} [^\n]*--from-\w+={key}=",
                         readme), f"README.md does not create {name} with key {key}"


def test_every_cleancut_variable_in_the_manifests_is_a_setting() -> None:
    named = {e["name"] for _, t in all_pod_templates() for c in t["spec"]["containers"]
             for e in c.get("env", []) if e["name"].startswith("CLEANCUT_")}
    assert named and named <= SETTINGS, named - SETTINGS
    # tests/test_settings.py scans every file under deploy/, deploy/k8s/ included.
    from tests.test_settings import _mentioning_files
    assert {p for p in K8S.rglob("*") if p.is_file()} <= set(_mentioning_files())
