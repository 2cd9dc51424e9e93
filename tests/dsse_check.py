"""Verifies a jitgate record with securesystemslib, a DSSE implementation that is not ours.

    python3 tests/dsse_check.py RECORD.json KEYS.json

KEYS.json is the body of GET /api/v1/keys. Each key is built two ways: from the raw
public key alone (so securesystemslib computes the keyid itself, which must equal the
listed one) and from the entry as a securesystemslib key dict. Prints the keyid that
verified and exits 0; exits 1 when the envelope does not verify, 2 on a keyid mismatch.
"""

import base64
import json
import sys

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import VerificationError
from securesystemslib.signer import SSlibKey


def main() -> int:
    record_path, keys_path = sys.argv[1], sys.argv[2]
    with open(keys_path) as f:
        listed = json.load(f)["keys"]
    keys = []
    for k in listed:
        raw = base64.b64decode(k["public_key"])
        own = SSlibKey.from_crypto(Ed25519PublicKey.from_public_bytes(raw))
        if own.keyid != k["keyid"]:
            print(f"keyid mismatch: securesystemslib computes {own.keyid}, the server lists {k['keyid']}")
            return 2
        as_dict = SSlibKey.from_dict(k["keyid"], {f: k[f] for f in ("keytype", "scheme", "keyval")})
        if as_dict != own:
            print(f"the listed key dict of {k['keyid']} is not the key itself")
            return 2
        keys.append(own)
    with open(record_path) as f:
        envelope = Envelope.from_dict(json.load(f))
    try:
        accepted = envelope.verify(keys, 1)
    except VerificationError as e:
        print(f"does not verify: {e}")
        return 1
    statement = json.loads(envelope.payload)
    print(json.dumps({"keyids": sorted(accepted), "request": statement["predicate"]["request"]["id"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
