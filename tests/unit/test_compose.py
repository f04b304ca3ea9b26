"""Roles, deployment files and the node-role graph, without nodes: what a bad file or role
gets told, which node-role waits for which, and that a run is given exactly what its
role declares (attribute injection), secrets left out of everything shown."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from interlock.compose import facts
from interlock.compose.converge import gather, order
from interlock.compose.graph import bind
from interlock.compose.roles import Library
from interlock.compose.runner import Outcome, _check, _env_value, _scrub
from interlock.compose.spec import load_deployment
from interlock.errors import ExitCode, InterlockError
from interlock.model import NodeFacts
from interlock.state import DeploymentRecord, NodeRecord, NodeRoleRecord, open_store

SWARM = {
    "name": "web",
    "sites": ["aws"],
    "groups": {
        "manager": {"count": 1, "roles": ["swarm-manager"]},
        "worker": {"count": 2, "roles": ["swarm-worker"]},
    },
    "ports": [80],
}


def write(tmp_path: Path, doc: dict[str, Any], name: str = "deploy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def role(folder: Path, name: str, script: str = "#!/bin/sh\n", **fields: Any) -> Path:
    (folder / name).mkdir(parents=True)
    (folder / name / "role.yaml").write_text(yaml.safe_dump({"name": name, "script": "run.sh",
                                                             **fields}))  # fmt: skip
    (folder / name / "run.sh").write_text(script)
    return folder / name


def rejected(path: Path, *words: str) -> str:
    with pytest.raises(InterlockError) as e:
        load_deployment(path)
    message = str(e.value)
    assert e.value.code == ExitCode.BAD_INPUT and "\n" not in message
    for w in words:
        assert w in message, message
    return message


def test_the_builtin_library_holds_docker_swarm_and_an_ansible_role() -> None:
    lib = Library()
    assert {"docker", "swarm-manager", "swarm-worker", "motd"} <= set(lib.roles)
    assert lib.roles["motd"].playbook and lib.roles["swarm-worker"].script
    assert lib.closure(["swarm-worker"]) == ["docker", "swarm-worker"]
    assert lib.roles["swarm-manager"].provides["swarm_worker_token"].secret


def test_the_graph_of_a_swarm(tmp_path: Path) -> None:
    spec = load_deployment(write(tmp_path, SWARM))
    graph = bind(spec)
    assert sorted(graph.bindings) == [
        "web-manager-1/docker", "web-manager-1/swarm-manager",
        "web-worker-1/docker", "web-worker-1/swarm-worker",
        "web-worker-2/docker", "web-worker-2/swarm-worker",
    ]  # fmt: skip
    # A worker waits for docker on its own node and for the manager (it wants its token).
    assert graph.deps["web-worker-2/swarm-worker"] == {
        "web-worker-2/docker", "web-manager-1/swarm-manager"
    }  # fmt: skip
    assert graph.deps["web-manager-1/swarm-manager"] == {"web-manager-1/docker"}
    assert graph.dependents("web-manager-1/docker") == {
        "web-manager-1/swarm-manager", "web-worker-1/swarm-worker", "web-worker-2/swarm-worker"
    }  # fmt: skip
    ranked = order(graph)
    assert ranked.index("web-manager-1/swarm-manager") < ranked.index("web-worker-1/swarm-worker")


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (
            {"groups": {"a": {"roles": ["nosuch"]}}},
            ["line 7", "groups.a.roles[0]", "unknown role 'nosuch'"],
        ),
        ({"groups": {"a": {"roles": ["swarm-worker"]}}}, ["groups.a.roles[0]", "no group has"]),
        ({"groups": {"a": {"roles": []}}}, ["groups.a.roles"]),
        ({"groups": {"A b": {"roles": ["docker"]}}}, ["groups", "lower case"]),
        (
            {"attributes": {"docker": {"images": "x.tar"}}},
            ["attributes.docker.images", "list of paths"],
        ),
        ({"attributes": {"docker": {"images": ["missing.tar"]}}}, ["images[0]", "no such file"]),
        (
            {"attributes": {"docker": {"colour": 1}}},
            ["attributes.docker.colour", "no such attribute"],
        ),
        (
            {"attributes": {"motd": {"banner": "x"}}},
            ["attributes.motd", "no group of this deployment"],
        ),
        ({"roles_from": ["nowhere"]}, ["roles_from[0]", "no such folder"]),
        ({"ports": [70000]}, ["ports[0]"]),
        ({"name": "Web_1"}, ["field 'name'"]),
        ({"groups": {"a": {"roles": ["docker"], "count": -1}}}, ["groups.a.count"]),
    ],
)
def test_a_bad_deployment_file_names_file_line_and_field(
    tmp_path: Path, change: dict[str, Any], words: list[str]
) -> None:
    doc = {**SWARM, **change}
    path = write(tmp_path, doc)
    assert rejected(path, *words).startswith(str(path))


def test_cycles_and_missing_attributes_in_users_roles(tmp_path: Path) -> None:
    roles = tmp_path / "roles"
    role(roles, "a", requires=["b"])
    role(roles, "b", requires=["a"])
    role(roles, "c", wants={"x": {"role": "d", "attribute": "out"}}, provides=["back"])
    role(roles, "d", wants={"y": {"role": "c", "attribute": "back"}}, provides=["out"])
    role(roles, "e", attributes={"size": {"type": "integer", "required": True}})
    role(roles, "f", wants={"x": {"role": "e", "attribute": "nothing"}})
    base = {"name": "t", "sites": ["aws"], "roles_from": ["roles"]}
    cycle = write(tmp_path, {**base, "groups": {"g": {"roles": ["a"]}}})
    rejected(cycle, "groups.g.roles[0]", "roles require each other: a → b → a")
    waits = write(tmp_path, {**base, "groups": {"g": {"roles": ["c", "d"]}}})
    rejected(waits, "field 'groups'", "roles wait for each other")
    missing = write(tmp_path, {**base, "groups": {"g": {"roles": ["e"]}}})
    rejected(missing, "attributes.e", "needs attribute 'size'")
    typed = write(tmp_path, {**base, "groups": {"g": {"roles": ["e"]}},
                             "attributes": {"e": {"size": True}}})  # fmt: skip
    rejected(typed, "attributes.e.size", "must be an integer")
    nothing = write(tmp_path, {**base, "groups": {"g": {"roles": ["e", "f"]}},
                               "attributes": {"e": {"size": 1}}})  # fmt: skip
    rejected(nothing, "f wants nothing that e does not provide")


def test_a_bad_role_names_its_own_file(tmp_path: Path) -> None:
    roles = tmp_path / "roles"
    folder = role(roles, "x", facts=["cluster_adress"])
    path = write(tmp_path, {"name": "t", "sites": ["a"], "roles_from": ["roles"],
                            "groups": {"g": {"roles": ["x"]}}})  # fmt: skip
    message = rejected(path, str(folder / "role.yaml"), "facts[0]", "unknown fact")
    assert "cluster_address" in message  # the known ones are listed
    (folder / "role.yaml").write_text(yaml.safe_dump({"name": "x", "script": "gone.sh"}))
    rejected(path, "field 'script'", "no such file")
    (folder / "role.yaml").write_text(yaml.safe_dump({"name": "y", "script": "run.sh"}))
    rejected(path, "must be the folder's name")


def node_facts(name: str, site: str, private: str, cidr: str) -> NodeFacts:
    return NodeFacts(
        node=name, deployment="web", site=site, provider="aws", distro="ubuntu",
        version="24.04", vcpus=2, memory_mib=4096, hostname=name, login_user="ubuntu",
        public_address=f"127.0.9.{private.rsplit('.', 1)[1]}", private_address=private,
        network_cidr=cidr,
    )  # fmt: skip


def test_cluster_address_is_private_only_where_every_node_shares_the_network() -> None:
    a = node_facts("a", "aws", "10.0.0.5", "10.0.0.0/24")
    b = node_facts("b", "aws", "10.0.0.6", "10.0.0.0/24")
    c = node_facts("c", "os", "10.0.0.7", "10.0.0.0/24")  # same CIDR, another site
    assert facts.cluster_address(a, [a, b])[0] == "10.0.0.5"
    assert facts.cluster_address(a, [a, b, c]) == ("127.0.9.5", "public: c is on another network")


def test_facts_read_from_a_node() -> None:
    text = "distro=ubuntu\nversion=24.04\nvcpus=2\nmemory_kib=4194304\nhostname=h\n" \
           "address=172.31.4.9/20\n"  # fmt: skip
    got = facts.parse(text, node="n", deployment="d", site="aws", provider="aws",
                      login_user="ubuntu", public_address="127.0.0.9")  # fmt: skip
    assert (got.private_address, got.network_cidr, got.memory_mib) == (
        "172.31.4.9", "172.31.0.0/20", 4096)  # fmt: skip
    with pytest.raises(ValueError, match="no IPv4 address"):
        facts.parse("distro=x\n", node="n", deployment="d", site="s", provider="p",
                    login_user="u", public_address="1.2.3.4")  # fmt: skip


def test_a_worker_gets_exactly_what_it_declares(tmp_path: Path) -> None:
    """Attribute injection: the manager's token and address, its own cluster address; no
    other fact, no other output of the manager; the token never in what is shown."""
    path = write(tmp_path, SWARM)
    spec = load_deployment(path)
    store = open_store(tmp_path / "state.db")
    lib = spec.library

    class E:  # what gather reads of an engine: its store
        pass

    e: Any = E()
    e.store = store
    store.put_deployment(DeploymentRecord(
        name="web", file=str(path), sites=["aws"], spec=spec.model_dump(mode="json"),
        role_dirs={n: str(r.folder) for n, r in lib.roles.items()},
        attributes={n: spec.attribute_values(r) for n, r in lib.roles.items()},
    ))  # fmt: skip
    for i, name in enumerate(["web-manager-1", "web-worker-1"]):
        store.put(
            NodeRecord(
                name=name,
                deployment="web",
                group=name.split("-")[1],
                status="ready",
                site="aws",
                facts=node_facts(name, "aws", f"10.0.0.{5 + i}", "10.0.0.0/24"),
            )
        )
    store.put_role(NodeRoleRecord(deployment="web", node="web-manager-1", role="swarm-manager",
                                  group="manager"))  # fmt: skip
    worker = lib.roles["swarm-worker"]
    assert gather(e, "web", "web-worker-1", worker) is None  # the manager is not active yet
    token = "SWMTKN-1-canary-token-value"
    outputs = {"swarm_manager_address": "10.0.0.5:2377", "swarm_worker_token": token,
               "swarm_node_id": "abc"}  # fmt: skip
    secret = ["swarm_worker_token"]
    store.update_role("web-manager-1", "swarm-manager", state="active", secret=secret,
                      outputs=outputs)  # fmt: skip
    got = gather(e, "web", "web-worker-1", worker)
    assert got is not None
    assert got.values == {
        "cluster_address": "10.0.0.6",
        "manager_address": "10.0.0.5:2377",
        "join_token": token,
    }
    assert got.secret == ("join_token",)
    assert got.sources["join_token"] == "swarm-manager.swarm_worker_token on web-manager-1"
    assert got.sources["cluster_address"].startswith("fact: private")
    shown = store.roles("web")[0].shown_outputs()
    assert shown["swarm_worker_token"] == "(secret)" and token not in json.dumps(shown)
    docker = gather(e, "web", "web-worker-1", lib.roles["docker"])
    assert docker is not None and docker.values == {"distro": "ubuntu", "images": []}
    assert docker.sources["images"] == "role default"


def test_a_run_must_write_what_it_provides_and_nothing_else() -> None:
    r = Library().roles["swarm-worker"]
    assert _check(r, Outcome(ok=True, outputs={"swarm_node_id": "x"})).ok
    missing = _check(r, Outcome(ok=True, outputs={}))
    assert not missing.ok and "did not write 'swarm_node_id'" in str(missing.error)
    extra = _check(r, Outcome(ok=True, outputs={"swarm_node_id": "x", "token": "y"}))
    assert not extra.ok and "undeclared 'token'" in str(extra.error)
    assert _scrub("joined with SWMTKN-abc", ["SWMTKN-abc"]) == "joined with …"
    assert _env_value(["/a", "/b"]) == "/a\n/b" and _env_value(True) == "true"


K8S = {
    "name": "k8s",
    "sites": ["aws"],
    "groups": {
        "control": {"roles": ["kubernetes-control-plane"]},
        "worker": {"count": 2, "roles": ["kubernetes-worker", "pod-routes"]},
    },
}


def test_a_pod_network_over_a_site_network_is_refused_by_field(tmp_path: Path) -> None:
    from interlock import yamlfile
    from interlock.compose.spec import overlapping

    attrs = {"kubernetes-control-plane": {"pod_cidr": "172.31.0.0/20"}}
    path = write(tmp_path, {**K8S, "attributes": attrs})
    spec = load_deployment(path)
    assert overlapping(spec, [("network a of site x", "10.20.0.0/24")]) is None
    clash = overlapping(spec, [("network subnet-1 of site aws", "172.31.0.0/16")])
    assert clash is not None
    message = str(yamlfile.field_error(path, *clash))
    assert "field 'attributes.kubernetes-control-plane.pod_cidr'" in message
    assert "(line " in message and "overlaps network subnet-1 of site aws" in message
    # The default service range is checked as well (no line: the file does not set it).
    clash = overlapping(spec, [("the network of k8s-worker-1", "10.96.3.0/24")])
    assert clash is not None and clash[0][-1] == "service_cidr"
    bad = write(tmp_path, {**K8S, "attributes": {"kubernetes-control-plane": {
        "pod_cidr": "10.244.0.1/16"}}})  # fmt: skip
    rejected(bad, "pod_cidr", "host bits zero")


def test_the_kubernetes_graph_routes_pods_after_every_worker(tmp_path: Path) -> None:
    graph = bind(load_deployment(write(tmp_path, K8S)))
    assert graph.deps["k8s-worker-1/pod-routes"] == {
        "k8s-worker-1/kubernetes-worker", "k8s-worker-2/kubernetes-worker"
    }  # fmt: skip
    assert "k8s-control-1/kubernetes-control-plane" in graph.deps["k8s-worker-2/kubernetes-worker"]
    assert graph.deps["k8s-control-1/kubernetes-control-plane"] == {
        "k8s-control-1/docker", "k8s-control-1/etcd", "k8s-control-1/kubernetes-binaries",
    }  # fmt: skip
