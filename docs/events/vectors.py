#!/usr/bin/env python3
"""Writes docs/events/vectors.json: quire-event/v1 envelopes, their RFC 8785
canonical bytes and RFC 9162 leaf hashes, computed here in Python (json,
hashlib) independently of Quire's Rust encoder, which a test checks
against this file. Run: python3 docs/events/vectors.py > docs/events/vectors.json
"""
import hashlib
import json


def canon(v):
    """RFC 8785 over the envelope's subset: objects, strings, integers."""
    if isinstance(v, dict):
        names = sorted(v, key=lambda k: k.encode("utf-16-be"))
        return "{" + ",".join(canon(k) + ":" + canon(v[k]) for k in names) + "}"
    if isinstance(v, bool) or v is None:
        raise ValueError("outside the subset")
    if isinstance(v, int):
        assert 0 <= v <= 2**53 - 1
        return str(v)
    if isinstance(v, str):
        # ECMAScript JSON.stringify: json.dumps escapes the same set
        # (", \, controls; \b \f \n \r \t by name, others as lowercase \u00xx).
        return json.dumps(v, ensure_ascii=False)
    raise ValueError(type(v))


def commitment(salt, payload):
    return hashlib.sha256(salt + payload).hexdigest()


SALT = bytes(range(32))
PAYLOAD = '{"kind":"Event","verb":"delete","user":{"username":"alice"}}'

cases = [
    ("minimal", {
        "v": "quire-event/v1", "log_time_ms": 1764806400000,
        "submitter": "anonymous", "type": "app.event", "actor": "a",
        "action": "b", "outcome": "unknown",
    }),
    ("all fields", {
        "v": "quire-event/v1", "log_time_ms": 1764806400123,
        "submitter": "token:ingest", "tenant": "acme",
        "type": "auth.login", "actor": "alice@example.com", "action": "login",
        "resource": "host/db-1", "outcome": "failure", "source": "203.0.113.7",
        "occurred_ms": 1764806399000,
        "attributes": {"method": "password", "mfa": "none"},
        "payload_sha256": commitment(SALT, PAYLOAD.encode()),
        "prev": {"actor": 41, "action": 40, "resource": 12, "type": 7},
    }),
    ("escapes", {
        "v": "quire-event/v1", "log_time_ms": 1,
        "submitter": "jwt:https://issuer.example#svc", "type": "k8s.audit",
        "actor": "system:serviceaccount:kube-system:\"job\"", "action": "delete",
        "resource": "pods/ns\\name", "outcome": "success",
        "attributes": {"note": "line1\nline2\ttab \u0001 \u007f end", "quote": "\"q\""},
    }),
    ("ordering by UTF-16", {
        "v": "quire-event/v1", "log_time_ms": 2,
        "submitter": "cert:dns:writer.example", "type": "x",
        "actor": "\u00e9l\u00e8ve \U0001F600", "action": "\uff5e", "outcome": "success",
        "attributes": {"\uff5e": "fullwidth tilde", "\U0001F600": "astral", "z": "", "\u00e9": "e acute"},
    }),
    ("largest integers", {
        "v": "quire-event/v1", "log_time_ms": 2**53 - 1,
        "submitter": "s", "type": "t", "actor": "a", "action": "b",
        "outcome": "unknown", "occurred_ms": 0,
        "prev": {"type": 2**53 - 2},
    }),
]

out = []
for name, env in cases:
    c = canon(env)
    leaf = hashlib.sha256(b"\x00" + c.encode()).hexdigest()
    v = {"name": name, "envelope": env, "canonical": c, "leaf_hash": leaf}
    if "payload_sha256" in env:
        v["salt_hex"] = SALT.hex()
        v["payload"] = PAYLOAD
    out.append(v)
print(json.dumps(out, indent=2, ensure_ascii=False))
