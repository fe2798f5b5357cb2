#!/usr/bin/env python3
"""Verify a clerk audit export without clerk, with Python's standard library.

    python3 verify_export.py EXPORT.jsonl [--checkpoints checkpoints.jsonl] [--pubkey HEX]

EXPORT.jsonl is `clerk audit export --format jsonl` of the WHOLE trail (or an
archive file written by `clerk audit archive`). The script recomputes every
event's hash by its `hash_format` (see docs/audit.md), checks that ids have no
gaps and that each event links to the previous one, and, with --checkpoints,
that every signed checkpoint still matches the export (tail truncation, a
rebuilt chain) and that its Ed25519 signature is valid (by --pubkey, the
installation's key from `clerk audit pubkey`; without it, by the key written in
each checkpoint). Exit 0 and "ok: ..." when intact; exit 1 naming the first
problem otherwise.
"""

import hashlib
import json
import sys

GENESIS = "0" * 64

# ---------------------------------------------------------------- RFC 8785

def es_number(x):
    """A float as ECMAScript's Number.prototype.toString (RFC 8785 3.2.2.3)."""
    if x != x or x in (float("inf"), float("-inf")):
        raise ValueError("NaN and infinities are not JSON")
    if x == 0:
        return "0"
    if x.is_integer() and abs(x) <= 2 ** 53:
        return str(int(x))
    sign = "-" if x < 0 else ""
    mant, _, exp = repr(abs(x)).partition("e")
    exp = int(exp) if exp else 0
    ip, _, fp = mant.partition(".")
    if ip.lstrip("0"):
        n = len(ip.lstrip("0")) + exp
    else:
        n = exp - (len(fp) - len(fp.lstrip("0")))
    digits = (ip + fp).lstrip("0").rstrip("0")
    k = len(digits)
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * (-n) + digits
    e = n - 1
    es = ("+" if e >= 0 else "-") + str(abs(e))
    return sign + digits[0] + ("." + digits[1:] if k > 1 else "") + "e" + es


def jcs(v):
    """RFC 8785 canonical JSON: sorted keys (UTF-16 order), no whitespace,
    minimal string escapes, ECMAScript numbers."""
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        # JSON numbers are IEEE doubles in RFC 8785: exact up to 2^53.
        return str(v) if abs(v) <= 2 ** 53 else es_number(float(v))
    if isinstance(v, float):
        return es_number(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ",".join(jcs(x) for x in v) + "]"
    if isinstance(v, dict):
        keys = sorted(v, key=lambda k: k.encode("utf-16-be"))
        return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + jcs(v[k]) for k in keys) + "}"
    raise TypeError(type(v))


def legacy_canonical(v):
    """Hash format 1: clerk 0.1's own canonical JSON (sorted keys, no
    whitespace, serde_json number forms; exact for integers and ordinary
    decimals)."""
    if isinstance(v, dict):
        return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + legacy_canonical(v[k])
                              for k in sorted(v)) + "}"
    if isinstance(v, list):
        return "[" + ",".join(legacy_canonical(x) for x in v) + "]"
    if isinstance(v, float):
        return repr(v)
    return json.dumps(v, ensure_ascii=False)

# ---------------------------------------------------------------- hashes

V1_FIELDS = ["id", "run_id", "seq", "at", "actor", "kind", "step", "step_name", "action",
             "target", "detail", "outcome", "duration_ms", "error"]
V2_FIELDS = ["hash_format"] + V1_FIELDS + ["item_key", "prev_hash"]


def event_hash(e):
    fmt = e.get("hash_format", 1)
    if fmt == 1:
        content = {k: e.get(k) for k in V1_FIELDS}
        if e.get("item_key") is not None:
            content["item_key"] = e["item_key"]
        text = e["prev_hash"] + legacy_canonical(content)
    elif fmt == 2:
        text = jcs({k: e.get(k) for k in V2_FIELDS})
    else:
        raise ValueError("unknown hash_format %r" % fmt)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()

# ---------------------------------------------------------------- Ed25519 (RFC 8032, 6)

P = 2 ** 255 - 19
Q = 2 ** 252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)


def _add(a, b):
    A, B = (a[1] - a[0]) * (b[1] - b[0]) % P, (a[1] + a[0]) * (b[1] + b[0]) % P
    C, Dd = 2 * a[3] * b[3] * D % P, 2 * a[2] * b[2] % P
    E, F, G, H = B - A, Dd - C, Dd + C, B + A
    return (E * F, G * H, F * G, E * H)


def _mul(s, pt):
    acc = (0, 1, 1, 0)
    while s > 0:
        if s & 1:
            acc = _add(acc, pt)
        pt = _add(pt, pt)
        s >>= 1
    return acc


def _recover_x(y, sign):
    if y >= P:
        return None
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P)
    if x2 % P == 0:
        return None if sign else 0
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P != 0:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P != 0:
        return None
    if (x & 1) != sign:
        x = P - x
    return x


def _decompress(s):
    y = int.from_bytes(s, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    x = _recover_x(y, sign)
    return None if x is None else (x, y, 1, x * y % P)


_GY = 4 * pow(5, P - 2, P) % P
_GX = _recover_x(_GY, 0)
BASE = (_GX, _GY, 1, _GX * _GY % P)


def ed25519_verify(public, msg, sig):
    if len(public) != 32 or len(sig) != 64:
        return False
    A, R = _decompress(public), _decompress(sig[:32])
    if A is None or R is None:
        return False
    s = int.from_bytes(sig[32:], "little")
    if s >= Q:
        return False
    h = int.from_bytes(hashlib.sha512(sig[:32] + public + msg).digest(), "little") % Q
    left, right = _mul(s, BASE), _add(R, _mul(h, A))
    return (left[0] * right[2] - right[0] * left[2]) % P == 0 and \
           (left[1] * right[2] - right[1] * left[2]) % P == 0


def checkpoint_message(cp):
    return jcs({k: cp[k] for k in ("format", "events", "head_id", "head_hash", "at")}).encode()

# ---------------------------------------------------------------- verify


def main(argv):
    args, opts = [], {}
    it = iter(argv)
    for a in it:
        if a in ("--checkpoints", "--pubkey"):
            opts[a] = next(it, None)
        else:
            args.append(a)
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    events, trailer = [], None
    with open(args[0], encoding="utf-8") as f:
        for line in f:
            if line.strip():
                events.append(json.loads(line))
    if events and "archive" in events[-1]:
        trailer = events.pop()
    # Where the chain starts: genesis, or after an archive.
    start = {"through_id": 0, "through_hash": GENESIS}
    if trailer:
        start = trailer["prev"]
    else:
        for e in reversed(events):
            if e.get("kind") == "audit.archived":
                start = e["detail"]
                break
    prev_id, prev_hash = start["through_id"], start["through_hash"]
    hashes = {}
    for e in events:
        eid = e["id"]
        if eid != prev_id + 1:
            return fail("event %d: previous events %d..%d are missing" % (eid, prev_id + 1, eid - 1))
        if event_hash(e) != e["hash"]:
            return fail("event %d: hash does not match its content (edited?)" % eid)
        if e["prev_hash"] != prev_hash:
            return fail("event %d: prev_hash does not link to event %d" % (eid, prev_id))
        prev_id, prev_hash = eid, e["hash"]
        hashes[eid] = e["hash"]
    if trailer and (trailer["archive"]["through_id"], trailer["archive"]["through_hash"]) != (prev_id, prev_hash):
        return fail("the archive trailer does not name its last event")
    checked = 0
    if opts.get("--checkpoints"):
        pinned = opts.get("--pubkey")
        end = trailer["archive"]["through_id"] if trailer else None
        with open(opts["--checkpoints"], encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                cp = json.loads(line)
                key = pinned or cp.get("public_key")
                if cp.get("signature"):
                    if not key or not ed25519_verify(bytes.fromhex(key), checkpoint_message(cp),
                                                     bytes.fromhex(cp["signature"])):
                        return fail("checkpoint line %d: signature does not verify" % n)
                head = cp["head_id"]
                if head <= start["through_id"] or (end is not None and head > end):
                    continue
                if head not in hashes:
                    return fail("checkpoint line %d: event %d is not in the export (truncated?)" % (n, head))
                if hashes[head] != cp["head_hash"]:
                    return fail("checkpoint line %d: event %d has another hash (chain rebuilt?)" % (n, head))
                checked += 1
    print("ok: %d events verified, %d checkpoints" % (len(events), checked))
    return 0


def fail(msg):
    print("tampered: " + msg)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
