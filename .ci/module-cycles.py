#!/usr/bin/env python3
"""Fails when the modules of flavio-node import each other in a cycle, or
when cluster/ names the gRPC layer (tonic, generated protobuf, crate::rpc).

A module's imports are the `crate::a::b` and `super::x` paths in its code
(comments left out), reduced to the deepest module that exists. Modules are
compared as siblings: `cluster::handoff` depends on `cluster::manager` when
anything inside the one names anything inside the other, and each level must
be acyclic. A parent and its own children may name each other.
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "node", "src")

mods = {}
for root, _, files in os.walk(ROOT):
    for f in files:
        if not f.endswith(".rs"):
            continue
        path = os.path.relpath(os.path.join(root, f), ROOT)
        parts = path[:-3].split(os.sep)
        if parts[-1] in ("mod", "lib"):
            parts = parts[:-1]
        code = "\n".join(
            line for line in open(os.path.join(root, f), encoding="utf-8").read().split("\n")
            if not line.strip().startswith("//")
        )
        deps = set()
        for m in re.finditer(r"crate::([a-z_]+)(?:::([a-z_]+))?(?:::([a-z_]+))?", code):
            deps.add("::".join(x for x in m.groups() if x))
        for m in re.finditer(r"super::([a-z_]+)", code):
            deps.add("::".join(parts[:-1] + [m.group(1)]))
        mods["::".join(parts)] = (deps, code, path)

def norm(d):
    while d and d not in mods:
        d = "::".join(d.split("::")[:-1])
    return d

# Between siblings: A depends on B when anything inside A imports anything
# inside B. Each level of the tree must be acyclic.
def sibling_edge(a, b):
    """The children of their common parent that `a` and `b` fall under."""
    pa, pb = a.split("::"), b.split("::")
    i = 0
    while i < min(len(pa), len(pb)) and pa[i] == pb[i]:
        i += 1
    if i == len(pa) or i == len(pb):
        return None  # one contains the other
    return "::".join(pa[: i + 1]), "::".join(pb[: i + 1])

graph = {}
for m, (deps, _, _) in mods.items():
    for d in deps:
        d = norm(d)
        if not d:
            continue
        e = sibling_edge(m, d)
        if e:
            graph.setdefault(e[0], set()).add(e[1])
            graph.setdefault(e[1], set())

cycles, color = [], {}
def dfs(u, stack):
    color[u] = 1
    stack.append(u)
    for v in sorted(graph[u]):
        if color.get(v) == 1:
            cycles.append(stack[stack.index(v):] + [v])
        elif not color.get(v):
            dfs(v, stack)
    stack.pop()
    color[u] = 2

for m in sorted(graph):
    if not color.get(m):
        dfs(m, [])

bad = False
for c in cycles:
    print("import cycle: " + " -> ".join(c or ["crate"]))
    bad = True
for m, (_, code, path) in sorted(mods.items()):
    if m.split("::")[0] == "cluster":
        for word in ("tonic", "flavio_proto", "crate::rpc", "pb::"):
            if word in code:
                print(f"{path}: the cluster layer names {word}")
                bad = True
print(f"{len(mods)} modules checked")
sys.exit(1 if bad else 0)
