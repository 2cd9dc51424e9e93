"""Checks a jitgate server's transparency log with an independent implementation of the
C2SP formats and RFC 9162 proofs (PyPI's aics-tlog): the checkpoint's log signature and
witness cosignatures, every leaf's inclusion proof, every consistency proof to the
latest tree, and a record's offline log entry.

usage: tlog_check.py SERVER TOKEN [--witness VKEY]... [--record FILE]...
Exits 0 when everything holds; prints what failed and exits 1 otherwise."""

import base64
import json
import sys
import urllib.request

from aics_tlog import (
    MerkleTree,
    parse_note,
    parse_vkey,
    verify_checkpoint,
    verify_consistency,
    verify_leaf_inclusion,
)


def get(url, token=None):
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.read()


def fail(msg):
    print(f"FAIL: {msg}")
    sys.exit(1)


def main(argv):
    server, token = argv[0].rstrip("/"), argv[1]
    witnesses, records = [], []
    rest = argv[2:]
    while rest:
        flag, value, rest = rest[0], rest[1], rest[2:]
        (witnesses if flag == "--witness" else records).append(value)

    log_key = parse_vkey(get(f"{server}/api/v1/log/key").decode().strip())
    note = parse_note(get(f"{server}/api/v1/log/checkpoint"))
    res = verify_checkpoint(note, log_key, [parse_vkey(w) for w in witnesses], quorum=len(witnesses))
    if not res.ok:
        fail(f"checkpoint: {res.error}")
    size, root = res.size, res.root

    leaves = [get(f"{server}/api/v1/log/leaves/{i}", token) for i in range(size)]
    tree = MerkleTree(leaves)
    if tree.root() != root:
        fail("the root of the leaves is not the checkpoint's")
    for i, leaf in enumerate(leaves):
        p = json.loads(get(f"{server}/api/v1/log/proof/inclusion?index={i}&size={size}"))
        proof = [base64.b64decode(h) for h in p["hashes"]]
        if (p["leaf_index"], p["tree_size"]) != (i, size):
            fail(f"inclusion proof {i}: wrong index or size in {p}")
        if not verify_leaf_inclusion(leaf, i, size, proof, root):
            fail(f"inclusion proof of leaf {i} in {size} does not verify")
    for m in range(1, size + 1):
        p = json.loads(get(f"{server}/api/v1/log/proof/consistency?from={m}&to={size}"))
        proof = [base64.b64decode(h) for h in p["hashes"]]
        if not verify_consistency(m, size, tree.root(m), root, proof):
            fail(f"consistency proof {m} -> {size} does not verify")

    for path in records:
        env = json.load(open(path))
        statement = json.loads(base64.b64decode(env["payload"]))
        entry = statement["predicate"]["log"]
        rnote = parse_note(entry["checkpoint"].encode())
        rres = verify_checkpoint(rnote, log_key)
        if not rres.ok:
            fail(f"{path}: checkpoint: {rres.error}")
        if rres.size != entry["tree_size"]:
            fail(f"{path}: tree_size {entry['tree_size']} is not the checkpoint's {rres.size}")
        proof = [base64.b64decode(h) for h in entry["inclusion_proof"]]
        i = entry["index"]
        if not verify_leaf_inclusion(leaves[i], i, rres.size, proof, rres.root):
            fail(f"{path}: the inclusion proof of leaf {i} does not verify")
        # The leaf is the record's decision event.
        event = json.loads(leaves[i])
        if event["request_id"] != statement["predicate"]["request"]["id"]:
            fail(f"{path}: leaf {i} is an event of another request")

    print(f"ok: {size} leaves, {size} inclusion and {size} consistency proofs, "
          f"{len(res.witnesses)} witness cosignatures, {len(records)} records")


if __name__ == "__main__":
    main(sys.argv[1:])
