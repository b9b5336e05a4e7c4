"""Validates Kubernetes manifests against KServe's CRD schemas (OpenAPI v3 in the CRD files),
strictly: an object schema with `properties` and no `additionalProperties` or
`x-kubernetes-preserve-unknown-fields` accepts no other field (what `kubectl apply` does with
server-side field validation set to Strict), so a misspelt field fails here instead of being
silently pruned by the API server.

    python check_kserve.py CRD_DIR MANIFEST.yaml...

Prints, as JSON on stdout, for every document: its kind, name and its containers' name, args,
env, ports and resources, for the caller's own checks. Exits 1 with every error listed.
"""

import copy
import glob
import json
import os
import sys

import jsonschema
import yaml


def load_crds(crd_dir):
    schemas = {}
    for path in sorted(glob.glob(os.path.join(crd_dir, "*.yaml"))):
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if not doc or doc.get("kind") != "CustomResourceDefinition":
                    continue
                spec = doc["spec"]
                for version in spec["versions"]:
                    api = f'{spec["group"]}/{version["name"]}'
                    schemas[(api, spec["names"]["kind"])] = strict(version["schema"]["openAPIV3Schema"])
    if not schemas:
        sys.exit(f"no CustomResourceDefinition in {crd_dir}")
    return schemas


def strict(schema):
    """The schema with Kubernetes' structural rules made JSON-schema checks: closed objects,
    int-or-string, nullable."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if node.get("x-kubernetes-int-or-string"):
                node.pop("type", None)
                node.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
            if node.get("nullable") and isinstance(node.get("type"), str):
                node["type"] = [node["type"], "null"]
            if (
                node.get("type") == "object"
                and "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


def containers(doc):
    spec = doc.get("spec", {})
    found = list(spec.get("containers", []))
    predictor = spec.get("predictor", {})
    found += predictor.get("containers", [])
    if "model" in predictor:
        found.append(dict(predictor["model"], name=predictor["model"].get("name", "kserve-container")))
    return [
        {k: c.get(k) for k in ("name", "args", "env", "ports", "resources", "livenessProbe", "readinessProbe")}
        for c in found
    ]


def main():
    crd_dir, manifests = sys.argv[1], sys.argv[2:]
    schemas = load_crds(crd_dir)
    errors, report = [], []
    for path in manifests:
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        if not docs:
            errors.append(f"{path}: no document")
        for doc in docs:
            key = (doc.get("apiVersion"), doc.get("kind"))
            name = doc.get("metadata", {}).get("name")
            schema = schemas.get(key)
            if schema is None:
                errors.append(f"{path}: {key[1]} {name}: no CRD schema for apiVersion {key[0]} kind {key[1]}; have {sorted(schemas)}")
                continue
            validator = jsonschema.Draft7Validator(schema)
            for e in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path)):
                where = ".".join(str(p) for p in e.absolute_path) or "(document)"
                errors.append(f"{path}: {key[1]} {name}: {where}: {e.message}")
            report.append({
                "file": path, "kind": key[1], "name": name,
                "metadata": doc.get("metadata", {}), "spec": doc.get("spec", {}),
                "containers": containers(doc),
            })
    if errors:
        print("\n".join(errors), file=sys.stderr)
        sys.exit(1)
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
