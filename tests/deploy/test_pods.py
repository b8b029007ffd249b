"""How mlsys.pipelines.kubelet assembles a container as the kubelet does: the environment from
envFrom then env (later wins), `$(VAR)` expanded in values, command and args, a missing
object or key refused unless optional."""

import pytest

from mlsys.pipelines.kubelet import CreateContainerConfigError, Pod, argv, environment, quantity

DOCUMENTS = [
    {"kind": "ConfigMap", "metadata": {"name": "config-abc", "namespace": "n"},
     "data": {"HOST": "db", "PORT": "5432", "not a name": "x"}},
    {"kind": "Secret", "metadata": {"name": "secret-abc", "namespace": "n"},
     "data": {"PASSWORD": "cw=="}},  # "s"
    {"kind": "ConfigMap", "metadata": {"name": "elsewhere", "namespace": "other"}, "data": {}},
]  # fmt: skip


def pod(container: dict) -> Pod:
    return Pod(namespace="n", kind="Job", name="job", spec={"containers": [container]})


def test_env_from_then_env_with_expansion():
    container = {
        "envFrom": [{"configMapRef": {"name": "config-abc"}},
                    {"secretRef": {"name": "secret-abc"}, "prefix": "DB_"}],
        "env": [{"name": "PORT", "value": "6543"},
                {"name": "URL", "value": "postgres://$(HOST):$(PORT)/$(MISSING) $$(HOST)"},
                {"name": "ME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "command": ["sh", "-c"], "args": ["echo $(URL)"],
    }  # fmt: skip
    env = environment(pod(container), DOCUMENTS)
    assert env == {"HOST": "db", "PORT": "6543", "DB_PASSWORD": "s", "ME": "job",
                   "URL": "postgres://db:6543/$(MISSING) $(HOST)"}  # fmt: skip
    assert argv(container, env) == ("sh", ["-c", "echo postgres://db:6543/$(MISSING) $(HOST)"])
    assert argv({"args": ["--port", "$(PORT)"]}, env) == (None, ["--port", "6543"])


@pytest.mark.parametrize(
    ("container", "message"),
    [
        ({"envFrom": [{"configMapRef": {"name": "config"}}]}, 'configmap "config" not found'),
        ({"envFrom": [{"configMapRef": {"name": "elsewhere"}}]}, 'configmap "elsewhere"'),
        ({"env": [{"name": "P", "valueFrom": {"secretKeyRef": {"name": "secret-abc",
                                                                "key": "PASS"}}}]},
         "couldn't find key PASS in Secret n/secret-abc"),
    ],
)  # fmt: skip
def test_what_does_not_resolve_refuses_the_pod(container, message):
    with pytest.raises(CreateContainerConfigError, match=message):
        environment(pod(container), DOCUMENTS)


def test_optional_references_may_be_missing():
    container = {
        "envFrom": [{"configMapRef": {"name": "nowhere", "optional": True}}],
        "env": [{"name": "P", "valueFrom": {"secretKeyRef": {"name": "secret-abc", "key": "X",
                                                              "optional": True}}}],
    }  # fmt: skip
    assert environment(pod(container), DOCUMENTS) == {}


def test_quantities():
    assert quantity("512Mi") == 512 * 2**20 and quantity("1Gi") == 2**30
    assert quantity("256M") == 256 * 10**6 and quantity(1024) == 1024
