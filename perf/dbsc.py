"""A scripted DBSC client for `make bench` (docs/dbsc.md): it logs in through the guard
listener, registers a device key of its own (P-256, in memory) and signs one refresh proof, so
that perf/run.py can measure a bound session's steady request (`bound`) and a refresh
(`refresh`) with wrk.

wrk replays one request, so the refresh class sends the same signed proof over and over: the
filter accepts it for as long as its challenge is valid (dbsc.ticket_ttl_s + 60 s, 960 s by
default: a class run is far shorter) and verifies its signature every time, which is what the
class measures. Real browsers sign each challenge once.

Signing uses the `cryptography` package (`make bench` installs it into the venv); the JWT is
assembled here: base64url JSON header and payload, the raw r||s signature (RFC 7518 3.4)."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass

import common as c

COOKIE = "__Host-session"
TICKET = "__Host-session-bound"
DBSC_PATH = "/.session-guard/dbsc"


def _crypto():
    try:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
    except ImportError as e:  # the classes need it; the others run without
        raise SystemExit(f"the bound/refresh classes need the Python package `cryptography` "
                         f"in the bench's interpreter (`make bench` installs it): {e}") from e
    return hashes, ec, decode_dss_signature


def b64u(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


class DeviceKey:
    """The device key a browser would keep in its TPM: here a P-256 key in memory."""

    def __init__(self):
        hashes, ec, dss = _crypto()
        self._hashes, self._ec, self._dss = hashes, ec, dss
        self._key = ec.generate_private_key(ec.SECP256R1())
        nums = self._key.public_key().public_numbers()
        self.jwk = {"kty": "EC", "crv": "P-256",
                    "x": b64u(nums.x.to_bytes(32, "big")), "y": b64u(nums.y.to_bytes(32, "big"))}

    def proof(self, challenge: str, with_jwk: bool) -> str:
        """A `dbsc+jwt` over the challenge (`jwk` at registration only)."""
        header = {"alg": "ES256", "typ": "dbsc+jwt", **({"jwk": self.jwk} if with_jwk else {})}
        signing_input = ".".join(b64u(json.dumps(p, separators=(",", ":")).encode())
                                 for p in (header, {"jti": challenge}))
        der = self._key.sign(signing_input.encode(), self._ec.ECDSA(self._hashes.SHA256()))
        r, s = self._dss(der)
        return f"{signing_input}.{b64u(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


@dataclass
class BoundSession:
    mesh: str  # `__Host-session=...`, bound to the device key
    ticket: str  # `__Host-session-bound=...`
    session_id: str  # the session_identifier
    refresh_proof: str  # a proof over the pre-seeded refresh challenge

    def steady_headers(self) -> dict[str, str]:
        return {"Cookie": f"{self.mesh}; {self.ticket}"}

    def refresh_headers(self) -> dict[str, str]:
        # Chrome refreshes proactively while the ticket has 120 s left: it still sends it.
        return {"Cookie": f"{self.mesh}; {self.ticket}", "Sec-Secure-Session-Id": self.session_id,
                "Secure-Session-Response": self.refresh_proof}


def _quoted(param: str, value: str) -> str | None:
    m = re.search(rf'{param}="([^"]*)"', value)
    return m.group(1) if m else None


def _set_cookie(headers, name: str) -> str | None:
    for v in c.header(headers, "set-cookie"):
        pair = v.split(";", 1)[0].strip()
        if pair.partition("=")[0] == name and "max-age=0" not in v.lower():
            return pair
    return None


def login(port: int) -> tuple[str | None, str, dict]:
    """A session logged in through the auth upstream (alice), not bound: (its mesh cookie, the
    `Secure-Session-Registration` offer of the login response, what happened)."""
    _st, hd, _ = c.http(port, "/app/page?x=1")
    anon = c.mesh_cookie_from(hd, COOKIE)
    st, hd, _ = c.http(port, "/auth/login", {"Cookie": anon} if anon else {})
    mesh = c.mesh_cookie_from(hd, COOKIE)
    offer = (c.header(hd, "secure-session-registration") or [""])[0]
    return mesh, offer, {"status": st, "set_cookie": bool(mesh), "offered": bool(offer)}


def register(port: int) -> tuple[BoundSession | None, dict]:
    """Login + registration on the listener at `port`: (the bound session, what happened)."""
    out: dict = {}
    mesh, offer, out["login"] = login(port)
    challenge = _quoted("challenge", offer)
    start = _quoted("path", offer) or f"{DBSC_PATH}/start"
    if not (mesh and challenge):
        return None, out
    key = DeviceKey()
    st, hd, body = c.http(port, start, {"Cookie": mesh, "Secure-Session-Response": key.proof(challenge, True)},
                          method="POST")
    bound_mesh, ticket = _set_cookie(hd, COOKIE), _set_cookie(hd, TICKET)
    try:
        session_id = json.loads(body)["session_identifier"]
    except (ValueError, KeyError, TypeError):
        session_id = None
    seeded = (c.header(hd, "secure-session-challenge") or [""])[0]
    next_challenge = re.match(r'\s*"([^"]*)"', seeded)
    out["start"] = {"status": st, "mesh_reissued": bool(bound_mesh), "ticket": bool(ticket),
                    "session_identifier": bool(session_id), "challenge": bool(next_challenge)}
    if not (st == 200 and bound_mesh and ticket and session_id and next_challenge):
        return None, out
    proof = key.proof(next_challenge.group(1), False)
    return BoundSession(bound_mesh, ticket, session_id, proof), out


def check(port: int, b: BoundSession, refresh_path: str) -> tuple[dict, dict[str, bool]]:
    """One bound request and one refresh on `port`: do they take the path the classes measure?
    bound: the session's identity reaches the upstream; refresh: 200, a new ticket, no body.
    Returns (what was seen, class -> as intended)."""
    _st, hd, _ = c.http(port, "/app/page?x=1", b.steady_headers())
    sid = (c.header(hd, "x-echo-sid") or [""])[0]
    subject = (c.header(hd, "x-echo-subject") or [""])[0]
    st, rh, body = c.http(port, refresh_path, b.refresh_headers(), method="POST")
    seen = {"bound": {"session_upstream": bool(sid), "subject_upstream": subject == "alice"},
            "refresh": {"status": st, "new_ticket": bool(_set_cookie(rh, TICKET)),
                        "next_challenge": bool(c.header(rh, "secure-session-challenge")),
                        "ended": b"continue" in body}}
    ok = {"bound": bool(sid) and subject == "alice",
          "refresh": st == 200 and seen["refresh"]["new_ticket"] and not body}
    return seen, ok
