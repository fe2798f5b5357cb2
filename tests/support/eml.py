#!/usr/bin/python3
"""Parses a saved message with Python's standard `email` package and prints
it as JSON, so clerk's mail tests check what a real mail reader decodes:
headers (RFC 2047 decoded), the MIME tree, bodies and attachments (their
decoded bytes' SHA-256 and size, never a re-encoding of ours).

Usage: eml.py FILE.eml
"""

import email
import email.policy
import hashlib
import json
import sys


def part_json(part):
    out = {
        "content_type": part.get_content_type(),
        "disposition": part.get_content_disposition(),
        "filename": part.get_filename(),
        "transfer_encoding": part.get("Content-Transfer-Encoding"),
    }
    if part.is_multipart():
        out["parts"] = [part_json(p) for p in part.iter_parts()]
        return out
    payload = part.get_payload(decode=True) or b""
    out["size"] = len(payload)
    out["sha256"] = hashlib.sha256(payload).hexdigest()
    if part.get_content_maintype() == "text" and part.get_content_disposition() != "attachment":
        out["text"] = part.get_content()
    return out


def main():
    with open(sys.argv[1], "rb") as f:
        raw = f.read()
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    headers = {}
    for name, value in msg.items():
        headers.setdefault(name.lower(), []).append(str(value))
    doc = {
        "headers": headers,
        "defects": [str(d) for d in msg.defects],
        "body": part_json(msg),
    }
    json.dump(doc, sys.stdout, ensure_ascii=False, indent=1)


if __name__ == "__main__":
    main()
