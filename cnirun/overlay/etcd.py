"""The etcd v3 store, through its JSON gateway with etcd3gw.

etcd3gw is imported here only (about 160 ms with requests): no other cnirun
path pays for it. What etcd3gw does not expose is done with its client's
own session and URL: range reads that return the header revision (the point
a watch resumes from) and a watch whose stream errors reach the caller
(etcd3gw's Watcher drops them in a worker thread, so a watch that died with
etcd would look like a quiet network).

Every failure to reach etcd becomes :class:`EtcdUnavailable` (retry later);
anything else etcd refuses becomes :class:`OverlayError`.
"""
from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass
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


class Store:
    """One etcd endpoint."""

    def __init__(self, url: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.url = url
        protocol, host, port = parse_url(url)
        import etcd3gw  # lazily: only the overlay code needs it

        # api_path fixed: Debian's etcd 3.4 serves /v3/, and discovery would cost a request.
        self._client = etcd3gw.Etcd3Client(host=host, port=port, protocol=protocol, timeout=timeout,
                                           api_path="/v3/")
        self.timeout = timeout

    # -- plumbing --------------------------------------------------------------
    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        from etcd3gw import exceptions as ex

        try:
            return self._client.post(self._client.get_url(path), json=body)
        except (ex.ConnectionFailedError, ex.ConnectionTimeoutError) as e:
            raise EtcdUnavailable(f"etcd at {self.url} is unreachable ({_short(e)}): start it or fix --etcd") from None
        except ex.Etcd3Exception as e:
            text = _short(e)
            if "Internal" in type(e).__name__ or "unavailable" in text.lower():
                raise EtcdUnavailable(f"etcd at {self.url} is not serving ({text})") from None
            raise OverlayError(f"etcd at {self.url} refused {path}: {text}") from None
        except ValueError as e:  # not JSON: not an etcd gateway
            raise OverlayError(f"{self.url} did not answer like etcd's v3 gateway ({e}): check --etcd") from None

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
                resp = session.post(url, json=body, stream=True, timeout=(self.timeout, None))
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
    )


def _short(e: BaseException) -> str:
    text = " ".join(str(e).split())
    if "Connection refused" in text:
        return "connection refused"
    if "timed out" in text.lower():
        return "timed out"
    return text[:160] or type(e).__name__


__all__ = ["Store", "KeyValue", "WatchEvent", "parse_url", "prefix_end"]
