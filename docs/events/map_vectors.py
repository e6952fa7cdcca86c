#!/usr/bin/env python3
"""Writes docs/events/map_vectors.json: key maps (docs/EVENTS.md §11) of a
few keys, their roots and the proofs of keys present and absent, computed
here in Python (hashlib) from the definition, independently of Quire's
Rust map, which a test checks against this file.
Run: python3 docs/events/map_vectors.py > docs/events/map_vectors.json
"""
import hashlib
import json

EMPTY = bytes(32)


def h(b):
    return hashlib.sha256(b).digest()


def key(field, value):
    return h(b"quire-event-key/v1\n" + field.encode() + b"\n" + value.encode())


def bit(k, i):
    return (k[i // 8] >> (7 - i % 8)) & 1


def leaf(k, index):
    return h(b"\x00" + k + index.to_bytes(8, "big"))


def node(l, r):
    return h(b"\x01" + l + r)


def root(leaves, depth=0):
    """leaves: list of (key, index), distinct keys."""
    if not leaves:
        return EMPTY
    if len(leaves) == 1:
        return leaf(*leaves[0])
    left = [x for x in leaves if bit(x[0], depth) == 0]
    right = [x for x in leaves if bit(x[0], depth) == 1]
    return node(root(left, depth + 1), root(right, depth + 1))


def prove(leaves, k, depth=0):
    """(siblings from the root down, the leaf the path ends at or None)."""
    if not leaves:
        return [], None
    if len(leaves) == 1:
        return [], leaves[0]
    left = [x for x in leaves if bit(x[0], depth) == 0]
    right = [x for x in leaves if bit(x[0], depth) == 1]
    if bit(k, depth) == 0:
        sibs, end = prove(left, k, depth + 1)
        return [root(right, depth + 1)] + sibs, end
    sibs, end = prove(right, k, depth + 1)
    return [root(left, depth + 1)] + sibs, end


maps = [
    ("empty", []),
    ("one key", [("actor", "alice", 0)]),
    ("a log of six events", [
        ("actor", "alice", 4), ("actor", "bob", 5), ("action", "login", 3),
        ("action", "delete", 5), ("type", "app.event", 5),
        ("resource", "doc/7", 4), ("actor", "carol", 2),
    ]),
    ("forty keys", [("actor", f"user{n}", n * 3) for n in range(40)]),
]
asked = [("actor", "alice"), ("actor", "bob"), ("actor", "mallory"),
         ("action", "delete"), ("actor", "user7"), ("resource", "doc/8")]

out = []
for name, entries in maps:
    leaves = [(key(f, v), i) for f, v, i in entries]
    proofs = []
    for f, v in asked:
        k = key(f, v)
        sibs, end = prove(leaves, k)
        found = end[1] if end is not None and end[0] == k else None
        proofs.append({
            "field": f, "value": v, "key": k.hex(),
            "siblings": [s.hex() for s in sibs],
            "leaf": None if end is None else {"key": end[0].hex(), "index": end[1]},
            "found": found,
        })
    out.append({
        "name": name,
        "entries": [{"field": f, "value": v, "index": i} for f, v, i in entries],
        "root": root(leaves).hex(),
        "proofs": proofs,
    })
print(json.dumps(out, indent=2))
