"""The etcd v3 store, through its JSON gateway with etcd3gw.

etcd3gw is imported here only (about 160 ms with requests): no other cnirun
path pays for it. What etcd3gw does not expose is done with its client's
own session and URL: range reads that return the header revision (the point
a watch resumes from) and a watch whose stream errors reach the caller
(etcd3gw's Watcher drops them in a worker thread, so a watch that died with
etcd would look like a quiet network).

Every failure to reach etcd becomes :class:`EtcdUnavailable` (retry later);
anything else etcd refuses becomes :class:`OverlayError`.

Security, as flanneld's client: TLS with a CA file and a client certificate
(etcd's --client-cert-auth), and etcd's user/password auth. The password is
sent once to /v3/auth/authenticate; the token etcd returns goes in the
Authorization header of every request (the watch too), and a token etcd no
longer knows (expired, etcd restarted) is replaced once, then the request
is repeated.
"""
from __future__ import annotations

import base64
import json
import os
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlsplit

from .errors import EtcdUnavailable, OverlayError

DEFAULT_TIMEOUT = 5.0


def _b64(data: str | bytes) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def _unb64(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


def prefix_end(prefix: str) -> str:
    """The range end that selects every key starting with `prefix`."""
    raw = prefix.encode()
    return (raw[:-1] + bytes([raw[-1] + 1])).decode()


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: bytes
    mod_revision: int
    lease: int
    create_revision: int = 0


@dataclass(frozen=True)
class WatchEvent:
    kind: str  # "PUT" or "DELETE"
    kv: KeyValue
    revision: int


def parse_url(url: str) -> tuple[str, str, int]:
    """(protocol, host, port) of an etcd client URL such as http://127.0.0.1:2379."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OverlayError(f"--etcd {url!r} is not an etcd client URL such as http://127.0.0.1:2379")
    try:
        port = parts.port or 2379
    except ValueError:
        raise OverlayError(f"--etcd {url!r} has a bad port") from None
    return parts.scheme, parts.hostname, port


@dataclass(frozen=True)
class Credentials:
    """How to prove who we are to etcd (flanneld's --etcd-* options); all optional."""

    cafile: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def check(self, protocol: str) -> None:
        """OverlayError naming the option when the set cannot work (before any connection)."""
        tls = {"--etcd-cafile": self.cafile, "--etcd-certfile": self.certfile, "--etcd-keyfile": self.keyfile}
        if protocol != "https" and any(tls.values()):
            given = [k for k, v in tls.items() if v]
            raise OverlayError(f"{', '.join(given)} need{'s' if len(given) == 1 else ''} an https:// --etcd URL")
        if bool(self.certfile) != bool(self.keyfile):
            raise OverlayError("--etcd-certfile and --etcd-keyfile go together: give both or neither")
        for option, path in tls.items():
            if path and not os.access(path, os.R_OK):
                why = "no such file" if not os.path.exists(path) else "not readable"
                raise OverlayError(f"{option} {path}: {why}")
        if self.username and self.password is None:
            raise OverlayError(
                "--etcd-username needs a password: put it in FLANNELD_ETCD_PASSWORD or a file for --etcd-password-file"
            )
        if self.password is not None and not self.username:
            raise OverlayError("an etcd password without --etcd-username: give the user name too")


def _auth_problem(text: str) -> str | None:
    """What an etcd auth refusal means, from its message (None: not an auth refusal)."""
    low = text.lower()
    if "user name is empty" in low:
        return "needs a user"
    if "authentication failed" in low:
        return "wrong user or password"
    if "permission denied" in low:
        return "permission denied"
    if "invalid auth token" in low or "token is expired" in low:
        return "token"
    return None


class Store:
    """One etcd endpoint."""

    def __init__(self, url: str, timeout: float = DEFAULT_TIMEOUT, creds: Credentials | None = None) -> None:
        self.url = url
        protocol, host, port = parse_url(url)
        self.creds = creds = creds or Credentials()
        creds.check(protocol)
        import etcd3gw  # lazily: only the overlay code needs it

        # api_path fixed: Debian's etcd 3.4 serves /v3/, and discovery would cost a request.
        self._client = etcd3gw.Etcd3Client(host=host, port=port, protocol=protocol, timeout=timeout,
                                           api_path="/v3/", ca_cert=creds.cafile, cert_cert=creds.certfile,
                                           cert_key=creds.keyfile)
        self.timeout = timeout
        self._token: str | None = None
        # Given with each request: requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE override a session's
        # verify, so etcd3gw's ca_cert alone would be ignored wherever those are set.
        self._verify: dict[str, Any] = {"verify": creds.cafile} if creds.cafile else {}

    # -- plumbing --------------------------------------------------------------
    def _raw_post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        from etcd3gw import exceptions as ex

        try:
            return self._client.post(self._client.get_url(path), json=body, **self._verify)
        except (ex.ConnectionFailedError, ex.ConnectionTimeoutError) as e:
            full = str(getattr(e, "detail_text", None) or e)
            if "SSLError" in full:
                raise EtcdUnavailable(f"TLS with etcd at {self.url} failed: {self._tls_reason(full)}") from None
            if "Connection aborted" in full or "Connection reset" in full:
                hint = ("it may want a client certificate (--etcd-certfile, --etcd-keyfile)"
                        if self.url.startswith("https") else "if it serves TLS, use an https:// --etcd URL")
                raise EtcdUnavailable(f"etcd at {self.url} closed the connection: {hint}") from None
            raise EtcdUnavailable(f"etcd at {self.url} is unreachable ({_short(e)}): start it or fix --etcd") from None
        except ex.Etcd3Exception as e:
            text = _short(e)
            if "HTTP request to an HTTPS server" in text:
                raise OverlayError(f"etcd at {self.url} serves TLS: use https:// in --etcd (and --etcd-cafile)") from None
            if "Internal" in type(e).__name__ or "unavailable" in text.lower():
                raise EtcdUnavailable(f"etcd at {self.url} is not serving ({text})") from None
            raise OverlayError(f"etcd at {self.url} refused {path}: {text}") from None
        except ValueError as e:  # not JSON: not an etcd gateway
            raise OverlayError(f"{self.url} did not answer like etcd's v3 gateway ({e}): check --etcd") from None

    def _tls_reason(self, text: str) -> str:
        """What a requests SSLError text means here, naming the option to fix."""
        m = re.search(r"\[(?:SSL|X509)[^\]]*\] ([^(')]+)", text)
        reason = m.group(1).strip() if m else ("etcd closed the handshake" if "EOF" in text else " ".join(text.split())[:120])
        if "verify failed" in reason:
            return f"{reason}: give the CA that signed etcd's certificate as --etcd-cafile"
        if "alert" in reason or "closed the handshake" in reason:  # etcd's verdict on our certificate
            if not self.creds.certfile:
                return f"{reason}: etcd wants a client certificate: pass --etcd-certfile and --etcd-keyfile"
            return f"{reason}: etcd did not accept --etcd-certfile {self.creds.certfile} (signed by a CA it trusts?)"
        return f"{reason}: check --etcd-cafile, --etcd-certfile and --etcd-keyfile"

    def _authenticate(self) -> None:
        """A fresh token for the configured user, set on the session (so the watch carries it too)."""
        c = self.creds
        self._token = None
        self._client.session.headers.pop("Authorization", None)  # a stale token fails the authentication itself
        try:
            r = self._raw_post("/auth/authenticate", {"name": c.username, "password": c.password})
        except OverlayError as e:
            if isinstance(e, EtcdUnavailable) or _auth_problem(str(e)) != "wrong user or password":
                raise
            raise OverlayError(
                f"etcd at {self.url} refused user {c.username!r}: wrong user name or password"
                " (--etcd-username, FLANNELD_ETCD_PASSWORD or --etcd-password-file)"
            ) from None
        token = r.get("token")
        if not isinstance(token, str) or not token:
            raise OverlayError(f"etcd at {self.url} gave no auth token for user {c.username!r}: is auth enabled there?")
        self._token = token
        self._client.session.headers["Authorization"] = token

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if self.creds.username and self._token is None:
            self._authenticate()
        try:
            return self._raw_post(path, body)
        except EtcdUnavailable:
            raise
        except OverlayError as e:
            problem = _auth_problem(str(e))
            if problem is None:
                raise
            if problem == "token" and self.creds.username:
                self._authenticate()  # etcd forgot the token (expired or restarted): once more
                return self._raw_post(path, body)
            user = self.creds.username
            if not user:
                raise OverlayError(
                    f"etcd at {self.url} requires authentication: pass --etcd-username and the password"
                    " (FLANNELD_ETCD_PASSWORD or --etcd-password-file)"
                ) from None
            if problem == "permission denied":
                raise OverlayError(
                    f"etcd at {self.url} denied user {user!r} {path}: grant it readwrite on /coreos.com/network/"
                ) from None
            raise

    # -- KV ----------------------------------------------------------------------
    def get(self, key: str) -> KeyValue | None:
        kvs, _ = self.range(key)
        return kvs[0] if kvs else None

    def range(self, key: str, range_end: str | None = None) -> tuple[list[KeyValue], int]:
        """Keys from `key` (to `range_end`), and the store revision they were read at."""
        body: dict[str, Any] = {"key": _b64(key)}
        if range_end is not None:
            body["range_end"] = _b64(range_end)
        r = self._post("/kv/range", body)
        return [_kv(x) for x in r.get("kvs", [])], int(r.get("header", {}).get("revision", 0))

    def get_prefix(self, prefix: str) -> tuple[list[KeyValue], int]:
        return self.range(prefix, prefix_end(prefix))

    def put(self, key: str, value: bytes, lease: int = 0) -> None:
        body: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
        if lease:
            body["lease"] = lease
        self._post("/kv/put", body)

    def txn(self, compare: list[dict[str, Any]], success: list[dict[str, Any]],
            failure: list[dict[str, Any]] | None = None) -> tuple[bool, dict[str, Any]]:
        """One transaction: (succeeded, raw answer)."""
        r = self._post("/kv/txn", {"compare": compare, "success": success, "failure": failure or []})
        return bool(r.get("succeeded", False)), r

    # transaction building blocks
    @staticmethod
    def cmp_absent(key: str) -> dict[str, Any]:
        return {"key": _b64(key), "result": "EQUAL", "target": "VERSION", "version": "0"}

    @staticmethod
    def cmp_value(key: str, value: bytes) -> dict[str, Any]:
        return {"key": _b64(key), "result": "EQUAL", "target": "VALUE", "value": _b64(value)}

    @staticmethod
    def cmp_mod(key: str, mod_revision: int) -> dict[str, Any]:
        return {"key": _b64(key), "result": "EQUAL", "target": "MOD", "mod_revision": str(mod_revision)}

    @staticmethod
    def op_put(key: str, value: bytes, lease: int = 0) -> dict[str, Any]:
        req: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
        if lease:
            req["lease"] = str(lease)
        return {"request_put": req}

    @staticmethod
    def op_delete(key: str) -> dict[str, Any]:
        return {"request_delete_range": {"key": _b64(key)}}

    @staticmethod
    def op_get(key: str) -> dict[str, Any]:
        return {"request_range": {"key": _b64(key)}}

    # -- leases --------------------------------------------------------------------
    def grant(self, ttl: int) -> tuple[int, int]:
        """A new lease: (id, granted TTL in seconds)."""
        r = self._post("/lease/grant", {"TTL": str(ttl), "ID": "0"})
        if r.get("error"):
            raise OverlayError(f"etcd refused a {ttl} s lease: {r['error']}")
        return int(r["ID"]), int(r.get("TTL", ttl))

    def revoke(self, lease_id: int) -> None:
        try:
            self._post("/kv/lease/revoke", {"ID": str(lease_id)})
        except OverlayError as e:
            if "not found" not in str(e):  # already expired: fine
                raise

    def time_to_live(self, lease_id: int) -> int:
        """Seconds left on a lease (-1: expired or unknown)."""
        r = self._post("/kv/lease/timetolive", {"ID": str(lease_id)})
        return int(r.get("TTL", -1))

    # -- watch -----------------------------------------------------------------------
    def watch_prefix(self, prefix: str, start_revision: int, sink: Callable[[str, Any], None]) -> threading.Thread:
        """Stream changes under `prefix` from `start_revision` into sink(kind, payload) on a thread.

        sink("event", WatchEvent) for each change, sink("broken", reason) once
        when the stream ends for any reason (etcd gone, compaction, cancel):
        the caller re-lists and starts a new watch.
        """
        body = {"create_request": {"key": _b64(prefix), "range_end": _b64(prefix_end(prefix)),
                                   "start_revision": str(start_revision)}}
        url = self._client.get_url("/watch")
        session = self._client.session

        def pump() -> None:
            try:
                # Connect timeout only: a quiet network sends nothing for hours.
                resp = session.post(url, json=body, stream=True, timeout=(self.timeout, None), **self._verify)
                if resp.status_code != 200:
                    sink("broken", f"watch refused: HTTP {resp.status_code}")
                    return
                for line in resp.iter_lines(chunk_size=None):
                    if not line.strip():
                        continue
                    result = json.loads(line).get("result") or {}
                    if result.get("canceled") or result.get("compact_revision"):
                        sink("broken", result.get("cancel_reason") or "watch canceled (compacted)")
                        return
                    rev = int(result.get("header", {}).get("revision", 0))
                    for ev in result.get("events", []):
                        sink("event", WatchEvent(ev.get("type", "PUT"), _kv(ev.get("kv", {})), rev))
                sink("broken", "watch stream ended")
            except Exception as e:  # noqa: BLE001 - whatever broke the stream, the caller re-lists
                sink("broken", f"watch stream failed: {_short(e)}")

        t = threading.Thread(target=pump, name="etcd-watch", daemon=True)
        t.start()
        return t


def _kv(x: dict[str, Any]) -> KeyValue:
    return KeyValue(
        key=_unb64(x.get("key")).decode(errors="replace"),
        value=_unb64(x.get("value")),
        mod_revision=int(x.get("mod_revision", 0)),
        lease=int(x.get("lease", 0)),
        create_revision=int(x.get("create_revision", 0)),
    )


def _short(e: BaseException) -> str:
    # etcd3gw's exceptions carry their text in detail_text, not in args.
    text = " ".join(str(getattr(e, "detail_text", None) or e).split())
    if "Connection refused" in text:
        return "connection refused"
    if "timed out" in text.lower():
        return "timed out"
    return text[:160] or type(e).__name__


__all__ = ["Credentials", "Store", "KeyValue", "WatchEvent", "parse_url", "prefix_end"]
