"""Wiring rules: what the compose file, the rendered manifests and the Argo YAML mean when
read together with the images and the code. Schema validation sees none of this.

Each rule returns the faults it finds (an empty list: none), so that tests/deploy/test_wiring
can show it on what is deployed and on a fixture holding the fault it was written for
(tests/deploy/faults/, each taken from the files as they were before issue 11's fixes).
"""

import json
import re
import typing

import pydantic
import yaml
from hera.workflows.models import CronWorkflow

from infrastructure.images import IMAGES

ERLANG_HOME = "/var/lib/rabbitmq"  # the rabbitmq user's home in its image: .erlang.cookie
# CLI commands that act on what an earlier step made, and the option naming it. Without it
# they fall back to "the latest" (the gate judged whichever version was registered last).
CONSUMES = {"promote": "--version", "promote-ranker": "--version"}
HASH = re.compile(r"-[a-z0-9]{10}$")  # the suffix kustomize gives generated names


def writable_of(image: str) -> list[str] | None:
    """The directories one of our images makes for its user (uid 10001), None for an image
    that is not ours (third-party images own their directories)."""
    name = image.rsplit("/", 1)[-1].split(":")[0]
    if not name.startswith("mlsys-"):
        return None
    entry = IMAGES.get(name.removeprefix("mlsys-").replace("-", "_"))
    if entry is None or "dockerfile" in entry:  # built from its own Dockerfile
        return None
    return entry.get("writable", [])


def compose_volume_faults(compose: dict, writable=writable_of) -> list[str]:
    """A new named volume takes the owner of the image's directory at its mount point, and
    root's when the image lacks it: uid 10001 could not write there."""
    named = set(compose.get("volumes") or {})
    faults = []
    for name, service in compose["services"].items():
        made = writable(service.get("image", ""))
        if made is None:
            continue
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            if source in named and target not in made:
                faults.append(f"compose {name}: volume {source} on {target}, not made by its image")
    return faults


def pods(documents: list[dict]):
    """(workload, pod spec, replicas) of every workload with a pod template."""
    for document in documents:
        template = document.get("spec", {}).get("template")
        if template:
            replicas = 1 if document["kind"] == "Job" else document["spec"].get("replicas", 1)
            yield document, template["spec"], replicas


def claims_of(pod: dict, workload: dict) -> dict[str, str]:
    """Volume name -> claim name of the pod's persistent volumes."""
    claims = {
        v["name"]: v["persistentVolumeClaim"]["claimName"]
        for v in pod.get("volumes", [])
        if "persistentVolumeClaim" in v
    }
    for template in workload["spec"].get("volumeClaimTemplates", []):
        claims[template["metadata"]["name"]] = template["metadata"]["name"]
    return claims


def claim_mount_faults(documents: list[dict], writable=writable_of) -> list[str]:
    """A persistent volume mounted into one of our images must be writable by its user:
    the pod's fsGroup makes it so, or else the image makes the directory."""
    faults = []
    for workload, pod, _ in pods(documents):
        claims = claims_of(pod, workload)
        for container in pod.get("initContainers", []) + pod["containers"]:
            made = writable(container["image"])
            for mount in container.get("volumeMounts", []):
                if mount["name"] not in claims or made is None or mount.get("readOnly"):
                    continue
                if "fsGroup" not in pod.get("securityContext", {}) and (
                    mount["mountPath"] not in made
                ):
                    faults.append(
                        f"{workload['metadata']['name']}: claim on {mount['mountPath']} is not "
                        "writable by uid 10001 (no fsGroup, not made by the image)"
                    )
    return faults


def erlang_cookie_faults(documents: list[dict]) -> list[str]:
    """With fsGroup the kubelet makes every file of a volume group-readable at each mount;
    Erlang refuses a cookie others may read: a crash loop after the first re-creation."""
    faults = []
    for workload, pod, _ in pods(documents):
        context = pod.get("securityContext", {})
        if "fsGroup" not in context or context.get("fsGroupChangePolicy") == "OnRootMismatch":
            continue
        claims = claims_of(pod, workload)
        for container in pod["containers"]:
            for mount in container.get("volumeMounts", []):
                if mount["name"] in claims and mount["mountPath"] == ERLANG_HOME:
                    faults.append(f"{workload['metadata']['name']}: fsGroup on the cookie's home")
    return faults


def job_reapply_faults(kustomization: dict, documents: list[dict]) -> list[str]:
    """A Job's pod template is immutable: one naming a hash-suffixed ConfigMap or Secret (or
    one of our images, whose tag changes) makes the next `apply -k` fail, unless deploy.sh
    replaces it (its label) and it does not linger (its TTL)."""
    generated = {
        g["name"]
        for key in ("configMapGenerator", "secretGenerator")
        for g in kustomization.get(key, [])
    }
    hashed = not kustomization.get("generatorOptions", {}).get("disableNameSuffixHash")
    faults = []
    for document in documents:
        if document["kind"] != "Job":
            continue
        text = yaml.safe_dump(document["spec"]["template"])
        names = {HASH.sub("", name) for name in re.findall(r"name: ([\w-]+)", text)}
        if (hashed and names & generated) or re.search(r"image: \S*mlsys-", text):
            labels = document["metadata"].get("labels", {})
            name = document["metadata"]["name"]
            if labels.get("mlsys.io/replaced-on-deploy") != "true":
                faults.append(f"job {name}: not replaced on deploy")
            if document["spec"].get("ttlSecondsAfterFinished", 0) <= 0:
                faults.append(f"job {name}: no ttlSecondsAfterFinished")
    return faults


def shared_claim_faults(documents: list[dict]) -> list[str]:
    """A ReadWriteOnce volume attaches to one node: two pods using it (replicas, or a Job
    beside a Deployment) meet a Multi-Attach error as soon as they land on two nodes."""
    once = {
        d["metadata"]["name"]
        for d in documents
        if d["kind"] == "PersistentVolumeClaim" and "ReadWriteMany" not in d["spec"]["accessModes"]
    }
    users: dict[str, list[str]] = {}
    for workload, pod, replicas in pods(documents):
        for volume in pod.get("volumes", []):
            claim = volume.get("persistentVolumeClaim", {}).get("claimName")
            if claim in once:
                users.setdefault(claim, []).extend([workload["metadata"]["name"]] * replicas)
    return [
        f"claim {claim} is ReadWriteOnce, mounted by {names}"
        for claim, names in users.items()
        if len(names) > 1
    ]


def _models_in(annotation) -> list[type[pydantic.BaseModel]]:
    """Object models inside an annotation such as Optional[List[Template]]."""
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return [] if issubclass(annotation, pydantic.RootModel) else [annotation]
    return [model for argument in typing.get_args(annotation) for model in _models_in(argument)]


def _mapping_values(annotation):
    """For Optional[Dict[str, X]] the annotation X of the values, else None."""
    if typing.get_origin(annotation) is dict:
        return typing.get_args(annotation)[-1]
    for argument in typing.get_args(annotation):
        if (found := _mapping_values(argument)) is not None:
            return found
    return None


def unknown_keys(data, model: type[pydantic.BaseModel], path: str = "") -> list[str]:
    """Keys of `data` (recursively) that the Argo model does not define (Hera's models are
    generated from Argo's schema; Hera itself drops misspelled fields silently)."""
    if isinstance(data, list):
        return [p for i, item in enumerate(data) for p in unknown_keys(item, model, f"{path}[{i}]")]
    if not isinstance(data, dict):
        return []
    fields = {(f.alias or n): f.annotation for n, f in model.model_fields.items()}
    problems = []
    for key, value in data.items():
        if key not in fields:
            problems.append(f"{path}.{key}")
        elif (values := _mapping_values(fields[key])) is not None:
            for name, item in value.items():
                for nested in _models_in(values)[:1]:
                    problems += unknown_keys(item, nested, f"{path}.{key}.{name}")
        else:
            for nested in _models_in(fields[key])[:1]:
                problems += unknown_keys(value, nested, f"{path}.{key}")
    return problems


def documented_patches(text: str) -> list[tuple[str, dict]]:
    """The `kubectl patch cronworkflow NAME --type merge -p '...'` commands of a text."""
    found = re.findall(r"patch cronworkflow ([\w-]+) \\\\\s+--type merge -p '([^']+)'", text)
    return [(name, json.loads(patch)) for name, patch in found]


def merge_patch(target: dict, patch: dict) -> dict:
    """RFC 7386, as `kubectl patch --type merge` applies it."""
    merged = dict(target)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_patch(merged[key], value)
        else:
            merged[key] = value
    return merged


def cron_workflow_faults(cron: dict) -> list[str]:
    """What the Argo release deployed (v4.0) refuses or silently ignores in a CronWorkflow:
    unknown keys, `schedule` beside `schedules` (the controller rejects the object and never
    runs it), schedules that are not five-field crons, and workflow parameters used but
    never declared."""
    name = cron["metadata"]["name"]
    faults = [f"{name}: unknown key {key}" for key in unknown_keys(cron, CronWorkflow)]
    spec = cron["spec"]
    if "schedule" in spec and "schedules" in spec:
        faults.append(f"{name}: both spec.schedule and spec.schedules")
    for schedule in spec.get("schedules", []) or [spec.get("schedule", "")]:
        if len(schedule.split()) != 5:
            faults.append(f"{name}: schedule {schedule!r} is not a five-field cron")
    workflow = spec["workflowSpec"]
    declared = {p["name"] for p in workflow.get("arguments", {}).get("parameters", [])}
    used = set(re.findall(r"\{\{workflow\.parameters\.([\w-]+)\}\}", yaml.safe_dump(workflow)))
    faults += [f"{name}: workflow parameter {p} is not declared" for p in sorted(used - declared)]
    templates = {t["name"]: t for t in workflow["templates"]}
    for template in templates.values():
        inputs = template.get("inputs", {}).get("parameters", [])
        used = set(re.findall(r"\{\{inputs\.parameters\.([\w-]+)\}\}", yaml.safe_dump(template)))
        faults += [
            f"{name}/{template['name']}: input parameter {p} is not declared"
            for p in sorted(used - {p["name"] for p in inputs})
        ]
        for task in (t for d in templates.values() if "dag" in d for t in d["dag"]["tasks"]):
            if task["template"] != template["name"]:
                continue
            given = {p["name"] for p in task.get("arguments", {}).get("parameters", [])}
            required = {p["name"] for p in inputs if "value" not in p and "default" not in p}
            faults += [
                f"{name}/{task['name']}: input parameter {p} is not passed"
                for p in sorted(required - given)
            ]
    return faults


def deadline_faults(cron: dict) -> list[str]:
    """A CronWorkflow with `concurrencyPolicy: Forbid` whose runs have no deadline: one run
    stuck Pending blocks every later one."""
    spec = cron["spec"]
    if spec.get("concurrencyPolicy") == "Forbid" and not spec["workflowSpec"].get(
        "activeDeadlineSeconds"
    ):
        return [f"{cron['metadata']['name']}: Forbid without activeDeadlineSeconds"]
    return []


def handoff_faults(workflow: dict) -> list[str]:
    """Every step that acts on what an earlier step made (CONSUMES) receives it as an input
    parameter, fed by the DAG from an output parameter of a task it depends on, which that
    task's template reads from a file its command writes."""
    templates = {t["name"]: t for t in workflow["templates"]}
    faults = []
    for template in templates.values():
        args = template.get("container", {}).get("args", [])
        option = CONSUMES.get(args[0]) if args else None
        if option is None:
            continue
        given = args[args.index(option) + 1] if option in args else ""
        parameter = re.fullmatch(r"\{\{inputs\.parameters\.([\w-]+)\}\}", given)
        if not parameter:
            faults.append(f"{template['name']}: `{args[0]}` without {option} from a parameter")
            continue
        for dag in (t["dag"]["tasks"] for t in templates.values() if "dag" in t):
            for task in (t for t in dag if t["template"] == template["name"]):
                faults += _fed_faults(task, parameter.group(1), templates, dag)
    return faults


def _fed_faults(task: dict, parameter: str, templates: dict, dag: list[dict]) -> list[str]:
    arguments = task.get("arguments", {}).get("parameters", [])
    values = {p["name"]: p.get("value", "") for p in arguments}
    source = re.fullmatch(
        r"\{\{tasks\.([\w-]+)\.outputs\.parameters\.([\w-]+)\}\}", values.get(parameter, "")
    )
    if not source:
        return [f"task {task['name']}: {parameter} is not another task's output"]
    producer, output = source.groups()
    if producer not in re.findall(r"[\w-]+", task.get("depends", "")):
        return [f"task {task['name']}: does not depend on {producer}, whose output it reads"]
    (made,) = [templates[t["template"]] for t in dag if t["name"] == producer]
    outputs = {p["name"]: p for p in made.get("outputs", {}).get("parameters", [])}
    path = outputs.get(output, {}).get("valueFrom", {}).get("path")
    if path is None or path not in made["container"].get("args", []):
        return [f"task {producer}: output {output} is not a file its command writes"]
    return []


def _pod_specs(documents: list[dict], workflows: list[dict]):
    """(who, pod-level spec, containers, volumes) of every workload and workflow template."""
    for workload, pod, _ in pods(documents):
        who = f"{workload['kind'].lower()} {workload['metadata']['name']}"
        containers = pod.get("initContainers", []) + pod.get("containers", [])
        yield who, pod, containers, pod.get("volumes", []), workload
    for cron in workflows:
        spec = cron["spec"].get("workflowSpec", cron["spec"])
        for template in spec["templates"]:
            if "container" in template:
                who = f"{cron['metadata']['name']}/{template['name']}"
                volumes = spec.get("volumes", []) + template.get("volumes", [])
                yield who, spec, [template["container"]], volumes, None


def reference_faults(documents: list[dict], workflows: list[dict] = ()) -> list[str]:
    """Every ConfigMap, Secret (and key), ServiceAccount and claim that a pod or an Argo
    template of the namespace names is one the namespace renders: else the kubelet refuses
    the container (CreateContainerConfigError) or the pod is never admitted. Kustomize
    suffixes generated names with a hash, which the Argo YAML, applied apart, does not see."""
    objects: dict[str, dict[str, set[str]]] = {"ConfigMap": {}, "Secret": {}}
    accounts, claims = {"default"}, set()
    for document in documents:
        kind, name = document["kind"], document["metadata"]["name"]
        if kind in objects:
            keys = {**(document.get("data") or {}), **(document.get("stringData") or {})}
            objects[kind][name] = set(keys)
        elif kind == "ServiceAccount":
            accounts.add(name)
        elif kind == "PersistentVolumeClaim":
            claims.add(name)
    faults = []

    def check(who: str, kind: str, name: str, key: str | None = None) -> None:
        if name not in objects[kind]:
            faults.append(f"{who}: {kind} {name} is not rendered")
        elif key is not None and key not in objects[kind][name]:
            faults.append(f"{who}: {kind} {name} has no key {key}")

    for who, pod, containers, volumes, workload in _pod_specs(documents, workflows):
        account = pod.get("serviceAccountName")
        if account and account not in accounts:
            faults.append(f"{who}: ServiceAccount {account} is not rendered")
        for container in containers:
            for source in container.get("envFrom", []):
                for ref, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                    if ref in source and not source[ref].get("optional"):
                        check(who, kind, source[ref]["name"])
            for variable in container.get("env", []):
                value_from = variable.get("valueFrom", {})
                for ref, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
                    if ref in value_from and not value_from[ref].get("optional"):
                        check(who, kind, value_from[ref]["name"], value_from[ref]["key"])
        templates = {t["metadata"]["name"] for t in (workload or {}).get("spec", {}).get(
            "volumeClaimTemplates", [])}  # fmt: skip
        for volume in volumes:
            if "configMap" in volume and not volume["configMap"].get("optional"):
                check(who, "ConfigMap", volume["configMap"]["name"])
            if "secret" in volume and not volume["secret"].get("optional"):
                check(who, "Secret", volume["secret"]["secretName"])
            claim = volume.get("persistentVolumeClaim", {}).get("claimName")
            if claim and claim not in claims | templates:
                faults.append(f"{who}: PersistentVolumeClaim {claim} is not rendered")
    return faults
