#!/usr/bin/env python3
"""Renders every kustomization under deploy/ and validates the output, offline.

    python3 deploy/check.py [DEPLOY_DIR]

Each of base/, overlays/*/ and examples/*/ is rendered with `kubectl kustomize`. Every
document must then pass the Kubernetes JSON schema of its kind (strict: an unknown or
misspelt field fails) for the oldest and newest Kubernetes versions we support, from the
schemas that the kubernetes-validate package ships; a SecretProviderClass is checked against
schemas/secretproviderclass.json. The provider's DaemonSet must also keep the settings the
driver and operators rely on (socket folder, endpoint, probes, tolerations, hardening,
resources). driver/values.yaml must ask for the token audience and rotation.

Exit status 0 when everything passes; 1 with one line per problem otherwise.
"""

import json
import pathlib
import subprocess
import sys

import jsonschema
import kubernetes_validate
import yaml

KUBERNETES_VERSIONS = ["1.30", "1.37"]
PROVIDERS_DIR = "/var/run/secrets-store-csi-providers"
ENDPOINT = "--endpoint=unix:///provider/azure.sock"
AUDIENCE = "api://AzureADTokenExchange"


def renderings(root):
    """Every folder that kustomize should render on its own."""
    found = [root / "base"]
    for group in ("overlays", "examples"):
        found += sorted(p.parent for p in (root / group).glob("*/kustomization.yaml"))
    return found


def render(folder):
    result = subprocess.run(
        ["kubectl", "kustomize", str(folder)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise ValueError(f"kubectl kustomize failed: {result.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def schema_problems(doc, spc_schema):
    kind = doc.get("kind", "?")
    if kind == "SecretProviderClass":
        validator = jsonschema.Draft202012Validator(spc_schema)
        return [f"{e.json_path}: {e.message}" for e in validator.iter_errors(doc)]
    problems = []
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(p) for p in error.path) or "(top)"
            problems.append(f"Kubernetes {version}: {path}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(f"Kubernetes {version}: no schema for {doc.get('apiVersion')} {kind}")
    return problems


def daemonset_problems(ds, service_accounts):
    """The settings the driver and operators rely on, beyond what the schema can say."""
    spec = ds["spec"]["template"]["spec"]
    containers = spec.get("containers", [])
    if len(containers) != 1:
        return ["the provider pod must have exactly one container"]
    container = containers[0]
    args = container.get("args", [])
    security = container.get("securityContext", {})
    resources = container.get("resources", {})
    ports = {p.get("name"): p.get("containerPort") for p in container.get("ports", [])}
    healthz_port = next(
        (int(a.split("=", 1)[1]) for a in args if a.startswith("--healthz-port=")), 8989
    )
    socket_mounts = [
        m for m in container.get("volumeMounts", []) if m.get("mountPath") == "/provider"
    ]
    socket_volume = next(
        (v for v in spec.get("volumes", []) if socket_mounts and v["name"] == socket_mounts[0]["name"]),
        {},
    )

    checks = [
        (ENDPOINT in args, f"args must include {ENDPOINT}"),
        (
            socket_volume.get("hostPath", {}).get("path") == PROVIDERS_DIR,
            f"/provider must be the hostPath {PROVIDERS_DIR}",
        ),
        (
            {"operator": "Exists"} in spec.get("tolerations", []),
            "tolerations must include {operator: Exists} (every taint)",
        ),
        (
            spec.get("nodeSelector", {}).get("kubernetes.io/os") == "linux",
            "nodeSelector must pick kubernetes.io/os: linux",
        ),
        (bool(spec.get("priorityClassName")), "a priorityClassName is required"),
        (spec.get("automountServiceAccountToken") is False, "the pod must not mount an API token"),
        (
            spec.get("serviceAccountName") in service_accounts,
            f"serviceAccountName {spec.get('serviceAccountName')!r} is not rendered alongside",
        ),
        (security.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem must be true"),
        (
            security.get("allowPrivilegeEscalation") is False,
            "allowPrivilegeEscalation must be false",
        ),
        (security.get("privileged") is not True, "the container must not be privileged"),
        (
            security.get("capabilities", {}).get("drop") == ["ALL"],
            "capabilities must drop ALL",
        ),
        (not security.get("capabilities", {}).get("add"), "no capability may be added"),
        (ports.get("healthz") == healthz_port, "port healthz must be --healthz-port"),
    ]
    for kind in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            checks.append(
                (resource in resources.get(kind, {}), f"resources.{kind}.{resource} is required")
            )
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = container.get(probe, {}).get("httpGet", {})
        checks.append(
            (
                get.get("path") == path and get.get("port") in ("healthz", healthz_port),
                f"{probe} must GET {path} on the healthz port",
            )
        )
    return [message for ok, message in checks if not ok]


def driver_values_problems(path):
    values = yaml.safe_load(path.read_text())
    audiences = [t.get("audience") for t in values.get("tokenRequests") or []]
    checks = [
        (AUDIENCE in audiences, f"tokenRequests must include audience {AUDIENCE}"),
        (values.get("enableSecretRotation") is True, "enableSecretRotation must be true"),
        (bool(values.get("rotationPollInterval")), "rotationPollInterval must be set"),
        (
            values.get("linux", {}).get("providersDir") == PROVIDERS_DIR,
            f"linux.providersDir must be {PROVIDERS_DIR}",
        ),
    ]
    return [message for ok, message in checks if not ok]


def check(root):
    spc_schema = json.loads((root / "schemas" / "secretproviderclass.json").read_text())
    problems = []
    documents = 0
    folders = renderings(root)
    for folder in folders:
        name = folder.relative_to(root)
        try:
            docs = render(folder)
        except (ValueError, yaml.YAMLError) as error:
            problems.append(f"{name}: {error}")
            continue
        if not docs:
            problems.append(f"{name}: renders nothing")
        documents += len(docs)
        service_accounts = {d["metadata"]["name"] for d in docs if d.get("kind") == "ServiceAccount"}
        for doc in docs:
            what = f"{name}: {doc.get('kind', '?')}/{doc.get('metadata', {}).get('name', '?')}"
            problems += [f"{what}: {p}" for p in schema_problems(doc, spc_schema)]
            if doc.get("kind") == "DaemonSet" and doc["metadata"]["name"] == "akv-csi-provider":
                problems += [f"{what}: {p}" for p in daemonset_problems(doc, service_accounts)]
    problems += [f"driver/values.yaml: {p}" for p in driver_values_problems(root / "driver" / "values.yaml")]
    return folders, documents, problems


def main():
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).parent).resolve()
    folders, documents, problems = check(root)
    for problem in problems:
        print(f"deploy-check: {problem}", file=sys.stderr)
    if problems:
        print(f"deploy-check: FAILED, {len(problems)} problem(s)", file=sys.stderr)
        return 1
    versions = " and ".join(KUBERNETES_VERSIONS)
    print(
        f"deploy-check: {len(folders)} kustomizations, {documents} documents, valid for "
        f"Kubernetes {versions}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
