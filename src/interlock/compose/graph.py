"""The node-role graph of a deployment: which role runs on which node, and what each
node-role waits for: the roles it requires on its node; every node-role of a role it
wants an attribute from; for a cluster role, what its peers' nodes require too."""

from __future__ import annotations

from dataclasses import dataclass, field

from interlock.compose.spec import DeploymentSpec


@dataclass(frozen=True)
class Binding:
    node: str
    role: str
    group: str

    @property
    def id(self) -> str:
        return f"{self.node}/{self.role}"


@dataclass
class Graph:
    bindings: dict[str, Binding] = field(default_factory=dict)
    deps: dict[str, set[str]] = field(default_factory=dict)

    def dependents(self, ident: str) -> set[str]:
        """Every node-role that waits, directly or not, for `ident`."""
        out: set[str] = set()
        todo = [ident]
        while todo:
            cur = todo.pop()
            for other, deps in self.deps.items():
                if cur in deps and other not in out:
                    out.add(other)
                    todo.append(other)
        return out

    def of_role(self, role: str) -> list[Binding]:
        return sorted(
            (b for b in self.bindings.values() if b.role == role), key=lambda b: node_order(b.node)
        )


def node_names(spec: DeploymentSpec) -> dict[str, list[str]]:
    """Each group's node names: DEPLOYMENT-GROUP-1 … N."""
    return {
        g: [f"{spec.name}-{g}-{i}" for i in range(1, group.count + 1)]
        for g, group in spec.groups.items()
    }


def bind(spec: DeploymentSpec) -> Graph:
    lib = spec.library
    graph = Graph()
    for g, names in node_names(spec).items():
        for name in lib.closure(spec.groups[g].roles):
            for node in names:
                b = Binding(node, name, g)
                graph.bindings[b.id] = b
    for b in graph.bindings.values():
        role = lib.roles[b.role]
        deps = {f"{b.node}/{r}" for r in role.requires}
        for want in role.wants.values():
            deps |= {o.id for o in graph.of_role(want.role)}
        if role.cluster:
            for peer in graph.of_role(b.role):
                deps |= {f"{peer.node}/{r}" for r in role.requires}
        graph.deps[b.id] = deps - {b.id}
    return graph


def node_order(name: str) -> tuple[str, int]:
    """Nodes in the order people count them: web-worker-10 after web-worker-9."""
    head, _, tail = name.rpartition("-")
    return (head, int(tail)) if tail.isdigit() else (name, 0)
