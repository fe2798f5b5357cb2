#!/usr/bin/python3
"""A real SMTP server for clerk's mail tests (aiosmtpd, loopback only).

Binds 127.0.0.1 on a free port, prints `PORT <n>` on stdout, then serves until
killed. Every accepted message is saved as `<dir>/<n>.eml` (the DATA bytes,
exactly as received) with `<dir>/<n>.json` beside it (envelope sender,
recipients, the AUTH mechanism and login used, whether TLS was on). Both files
are written to a temporary name first and renamed, so a test that sees the
.json file sees a complete message.

Options:
  --dir DIR                  where to save messages (required)
  --user U --password P      require AUTH with these credentials
  --mechanisms PLAIN,LOGIN   the AUTH mechanisms offered (default: both)
  --cert FILE --key FILE     TLS certificate and key (PEM)
  --tls starttls|implicit    STARTTLS required before MAIL, or TLS from the first byte
  --reject ADDR              answer `550 5.1.1 <ADDR>: Recipient address rejected: User unknown` to RCPT TO:<ADDR>
  --tempfail ADDR            answer `451 4.3.0 <ADDR>: Temporary local problem, try again` to RCPT TO:<ADDR>
"""

import argparse
import asyncio
import json
import os
import socket
import ssl
import sys
import warnings

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Handler:
    def __init__(self, out_dir, reject, tempfail, implicit_tls):
        self.out_dir = out_dir
        self.implicit_tls = implicit_tls
        self.reject = {a.lower() for a in reject}
        self.tempfail = {a.lower() for a in tempfail}
        self.count = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in self.reject:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        if address.lower() in self.tempfail:
            return f"451 4.3.0 <{address}>: Temporary local problem, try again"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        n = self.count
        login = None
        if session.auth_data is not None and isinstance(session.auth_data, LoginPassword):
            login = session.auth_data.login.decode("utf-8", "replace")
        meta = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "authenticated": session.authenticated,
            "login": login,
            "mechanism": getattr(session, "clerk_mechanism", None),
            "tls": self.implicit_tls or session.ssl is not None,
        }
        write_atomic(os.path.join(self.out_dir, f"{n}.eml"), envelope.original_content)
        write_atomic(
            os.path.join(self.out_dir, f"{n}.json"),
            json.dumps(meta, indent=2).encode("utf-8"),
        )
        return f"250 2.0.0 Ok: queued as TEST{n:04d}"


def write_atomic(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def make_authenticator(user, password):
    def authenticate(server, session, envelope, mechanism, auth_data):
        session.clerk_mechanism = mechanism
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        ok = auth_data.login.decode() == user and auth_data.password.decode() == password
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    return authenticate


async def main():
    # "AUTH without TLS" is exactly what some tests want; no warning for it.
    warnings.simplefilter("ignore")
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True)
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--mechanisms", default="PLAIN,LOGIN")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--tls", choices=["starttls", "implicit"])
    p.add_argument("--reject", action="append", default=[])
    p.add_argument("--tempfail", action="append", default=[])
    a = p.parse_args()

    os.makedirs(a.dir, exist_ok=True)
    handler = Handler(a.dir, a.reject, a.tempfail, a.tls == "implicit")

    tls_context = None
    if a.tls:
        tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls_context.load_cert_chain(a.cert, a.key)

    offered = {m.strip().upper() for m in a.mechanisms.split(",") if m.strip()}
    excluded = [m for m in ("PLAIN", "LOGIN") if m not in offered]

    def factory():
        kwargs = dict(hostname="localhost", decode_data=False, enable_SMTPUTF8=True)
        if a.user:
            kwargs.update(
                authenticator=make_authenticator(a.user, a.password or ""),
                auth_required=True,
                # Over plain text too: the tests exercise AUTH without TLS.
                auth_require_tls=False,
                auth_exclude_mechanism=excluded,
            )
        if a.tls == "starttls":
            kwargs.update(tls_context=tls_context, require_starttls=True)
        return SMTP(handler, **kwargs)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        factory, sock=sock, ssl=tls_context if a.tls == "implicit" else None
    )
    print(f"PORT {port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
