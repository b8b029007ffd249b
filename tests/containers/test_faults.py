"""The faults only a running pod shows, each caught by the container tests: one fixture
per class (tests/containers/faults), started as the workloads are (mlsys.pipelines.kubelet),
must fail with the reason Kubernetes would give and the words that name the fault."""

from pathlib import Path

import pytest
import yaml

from mlsys.pipelines.kubelet import CreateContainerConfigError, run, workloads

pytestmark = pytest.mark.container

FAULTS = sorted(Path(__file__).with_name("faults").glob("*.yaml"))


@pytest.mark.parametrize("path", FAULTS, ids=lambda path: path.stem)
def test_fault_is_caught(cluster, path):
    fault = yaml.safe_load(path.read_text())
    namespace, expect = fault["namespace"], fault["expect"]
    # `rendered`: what the namespace rendered when the fault was found, in place of today's
    rendered = fault.get("rendered", cluster.documents[namespace])
    documents = rendered + fault["documents"]
    cluster.name_built_images(fault["documents"])
    (pod,) = workloads(fault["documents"])
    if expect["reason"] == "CreateContainerConfigError":
        with pytest.raises(CreateContainerConfigError, match=expect["says"]):
            run(pod, documents, network=cluster.network)
        return
    started = run(pod, documents, network=cluster.network)
    try:
        state = started.wait(timeout=300)
        assert state.startswith(expect["reason"]), f"{state}\n{started.logs()}"
        assert expect["says"] in started.logs(), started.logs()
    finally:
        started.stop()


def test_every_fault_class_of_the_issue_has_a_fixture():
    reasons = {yaml.safe_load(path.read_text())["expect"]["reason"] for path in FAULTS}
    assert reasons == {"CreateContainerConfigError", "Error", "OOMKilled"}
    assert len(FAULTS) >= 5
