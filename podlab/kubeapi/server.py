"""The Kubernetes REST API over plain HTTP, served from a `Store`.

Enough of the real server's dialect for kubectl 1.32 and the official client libraries:
discovery, list/get/create/update/patch/delete on every resource and its /status, watches
streamed as chunked newline-delimited JSON, server-side Tables for `kubectl get`, and
errors as Status objects with their HTTP codes. Bearer tokens authenticate (`auth`); no
TLS: the lab's API is for the lab's own hosts.
"""

from __future__ import annotations

import contextlib
import json
import logging
import select
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from podlab.kubeapi import discovery, framing
from podlab.kubeapi.auth import Tokens, authorize
from podlab.kubeapi.errors import ApiError, bad_request
from podlab.kubeapi.resources import Resource
from podlab.kubeapi.routing import Accept, Route, no_route, partial, resolve
from podlab.kubeapi.store import Store, Watch
from podlab.kubeapi.tables import table

log = logging.getLogger(__name__)
Obj = dict[str, Any]

PATCH_TYPES = {"application/merge-patch+json": "merge",
               "application/strategic-merge-patch+json": "strategic",
               "application/json-patch+json": "json"}
DEFAULT_WATCH_TIMEOUT = 1800.0  # the real server's minimum request timeout
STOP_GRACE = 2.0  # seconds stop() lets watch streams take to end cleanly
POLL = 0.5  # how often an idle watch checks for its client leaving or the server stopping
LISTEN_BACKLOG = 512  # connections the kernel queues before accept (kube-apiserver: 1024+)
IDLE_TIMEOUT = 30.0  # seconds a connection may send nothing before it is dropped


def _flag(query: dict[str, str], name: str) -> bool:
    return query.get(name, "").lower() in ("1", "true")


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = LISTEN_BACKLOG
    store: Store
    stopping: threading.Event
    connections: set[socket.socket]
    watches: set[Watch]
    tokens: Tokens | None  # None: no authentication (a test's private server)
    tls: ssl.SSLContext | None

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that fails its handshake or vanishes is the client's problem."""
        log.debug("connection from %s failed", client_address, exc_info=True)

    def get_request(self) -> tuple[socket.socket, Any]:
        """Accept; with TLS the handshake waits for the connection's own thread, so a slow
        or silent client cannot hold the accept loop."""
        conn, address = super().get_request()
        if self.tls is not None:
            conn = self.tls.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        return conn, address
    lock: threading.Condition  # guards connections and watches; notified as watches end


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT  # a silent client (idle keep-alive, half-sent request) lets go
    disable_nagle_algorithm = True  # responses go out in two writes; don't wait 40 ms
    server: _HTTPServer
    _warnings: list[str]  # Warning headers for the response being made

    def setup(self) -> None:
        super().setup()  # the connection's timeout bounds the TLS handshake too
        with self.server.lock:
            self.server.connections.add(self.connection)
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()

    def finish(self) -> None:
        with self.server.lock:
            self.server.connections.discard(self.connection)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    # -- plumbing ------------------------------------------------------------------------

    def _send(self, code: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        for warning in self._warnings:
            quoted = warning.replace("\\", "\\\\").replace('"', '\\"')
            self.send_header("Warning", f'299 - "{quoted}"')
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, code: int, obj: Any) -> None:
        self._send(code, json.dumps(obj).encode())

    def _decoded(self, body: bytes) -> Any:
        ctype = self.headers.get("Content-Type", "application/json").split(";")[0].strip()
        return framing.decode(body, ctype)

    def _serve(self) -> None:
        self._warnings = []
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        try:
            body = (framing.read_body(self.rfile, self.headers)
                    if self.command in ("POST", "PUT", "PATCH", "DELETE") else b"")
            self._dispatch([p for p in url.path.split("/") if p], query, body)
        except ApiError as e:
            if e.code in (400, 408, 413):  # the rest of the body, if any, is not read
                self.close_connection = True
            self._json(e.code, e.status())
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True
        except Exception as e:
            log.exception("%s %s failed", self.command, self.path)
            self._json(500, ApiError(500, "InternalError", f"Internal error occurred: {e}")
                       .status())

    # -- routing -------------------------------------------------------------------------

    def _dispatch(self, parts: list[str], query: dict[str, str], body: bytes) -> None:
        user = (self.server.tokens.authenticate(self.headers.get("Authorization", ""))
                if self.server.tokens is not None else None)
        if self.command == "GET" and self._discovery(parts):  # every user may discover
            return
        kinds = self.server.store.kinds
        if parts[:1] == ["api"] and len(parts) >= 3:
            route = resolve(kinds, ["", *parts[1:]])
        elif parts[:1] == ["apis"] and len(parts) >= 4:
            route = resolve(kinds, parts[1:])
        else:
            raise no_route()
        if user is not None:
            authorize(user, self._verb(route, query), route.resource.group,
                      route.resource.name, route.namespace)
        if query.get("dryRun"):
            raise bad_request("dryRun is not supported by this server")
        if route.name is None:
            self._collection(route, query, body)
        else:
            self._item(route, query, body)

    def _verb(self, route: Route, query: dict[str, str]) -> str:
        """The RBAC verb of this request."""
        if self.command == "GET":
            if route.name is not None:
                return "get"
            return "watch" if _flag(query, "watch") else "list"
        if self.command == "DELETE":
            return "delete" if route.name is not None else "deletecollection"
        return {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(self.command, "")

    def _discovery(self, parts: list[str]) -> bool:
        """Answer the discovery and OpenAPI endpoints; False if `parts` is none of them."""
        found: Any = None
        kinds = self.server.store.kinds
        if parts == ["version"]:
            found = discovery.version()
        elif parts == ["api"]:
            found = discovery.api_versions(self.headers.get("Host", ""))
        elif parts == ["apis"]:
            found = discovery.api_group_list(kinds)
        elif len(parts) == 2 and parts[0] == "api":
            found = discovery.api_resource_list(kinds, "", parts[1])
        elif len(parts) == 2 and parts[0] == "apis":
            found = discovery.api_group(kinds, parts[1])
        elif len(parts) == 3 and parts[0] == "apis":
            found = discovery.api_resource_list(kinds, parts[1], parts[2])
        elif parts == ["openapi", "v3"]:
            found = discovery.openapi_v3_index(kinds)
        elif parts[:2] == ["openapi", "v3"]:
            doc = discovery.openapi_v3_document(kinds, "/".join(parts[2:]))
            if doc is None:
                raise no_route()
            self._send(200, doc)
            return True
        else:
            return False
        if found is None:
            raise no_route()
        self._json(200, found)
        return True

    def _object(self, route: Route, body: bytes, query: dict[str, str]) -> Obj:
        obj = self._decoded(body)
        if not isinstance(obj, dict):
            raise bad_request("the request body must be a JSON object")
        self._check_fields(route, obj, query.get("fieldValidation", "Warn"))
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        if route.resource.namespaced:
            if meta.get("namespace") and meta["namespace"] != route.namespace:
                raise bad_request("the namespace of the provided object does not match the "
                                  "namespace sent on the request")
            meta["namespace"] = route.namespace
        if route.name is not None and meta.get("name") not in (None, "", route.name):
            raise bad_request(f"the name of the object ({meta['name']}) does not match the "
                              f"name on the URL ({route.name})")
        if route.name is not None:
            meta["name"] = route.name
        return obj

    def _check_fields(self, route: Route, obj: Obj, directive: str) -> None:
        """fieldValidation: Strict refuses unknown fields (kubectl's default, since this
        server advertises the parameter), Warn reports them in Warning headers."""
        r, unknown = route.resource, route.strategy.unknown_fields(obj)
        if not unknown or directive == "Ignore":
            return
        if directive == "Strict":
            what = ", ".join(f'unknown field "{f}"' for f in unknown)
            raise bad_request(f'{r.kind} in version "{r.version}" cannot be handled as a '
                              f"{r.kind}: strict decoding error: {what}")
        self._warnings = [f'unknown field "{f}"' for f in unknown]

    def _collection(self, route: Route, query: dict[str, str], body: bytes) -> None:
        store, r = self.server.store, route.resource
        if self.command == "GET" and _flag(query, "watch"):
            self._watch(route, query)
        elif self.command == "GET":
            items, rv = store.list(r.name, route.namespace, query.get("labelSelector", ""),
                                   query.get("fieldSelector", ""))
            self._respond_list(route, items, rv, query)
        elif self.command == "POST":
            if route.namespace is None and r.namespaced:
                raise ApiError(405, "MethodNotAllowed", "create needs a namespace in the URL")
            self._json(201, store.create(r.name, self._object(route, body, query)))
        elif self.command == "DELETE":
            items, rv = store.list(r.name, route.namespace, query.get("labelSelector", ""),
                                   query.get("fieldSelector", ""))
            gone = []
            for item in items:
                meta = item["metadata"]
                try:
                    gone.append(store.delete(r.name, meta.get("namespace"), meta["name"]))
                except ApiError as e:
                    if e.code != 404:
                        raise
            self._json(200, self._list(r, gone, rv))
        else:
            raise ApiError(405, "MethodNotAllowed", f"{self.command} is not allowed here")

    def _item(self, route: Route, query: dict[str, str], body: bytes) -> None:
        store, r, name = self.server.store, route.resource, str(route.name)
        status = route.subresource == "status"
        if self.command == "GET":
            obj = store.get(r.name, route.namespace, name)
            self._respond_object(route, obj, query)
        elif self.command == "PUT":
            obj = self._object(route, body, query)
            self._json(200, store.update_status(r.name, obj) if status
                       else store.update(r.name, obj))
        elif self.command == "PATCH":
            ctype = self.headers.get("Content-Type", "").split(";")[0].strip()
            if ctype not in PATCH_TYPES:
                raise ApiError(415, "UnsupportedMediaType", f"the body of the request was in "
                               f"an unknown format - accepted media types include: "
                               f"{', '.join(PATCH_TYPES)}")
            self._json(200, store.patch(r.name, route.namespace, name, self._decoded(body),
                                        PATCH_TYPES[ctype], subresource="status" if status
                                        else ""))
        elif self.command == "DELETE" and not status:
            self._check_preconditions(route, body)
            self._json(200, store.delete(r.name, route.namespace, name))
        else:
            raise ApiError(405, "MethodNotAllowed", f"{self.command} is not allowed here")

    def _check_preconditions(self, route: Route, body: bytes) -> None:
        """DeleteOptions.preconditions: uid and resourceVersion must still match."""
        options = self._decoded(body) if body.strip() else None
        wanted = (options or {}).get("preconditions") if isinstance(options, dict) else None
        if not wanted:
            return
        meta = self.server.store.get(route.resource.name, route.namespace,
                                     str(route.name))["metadata"]
        for field in ("uid", "resourceVersion"):
            if wanted.get(field) and wanted[field] != meta.get(field):
                raise ApiError(409, "Conflict", f"Precondition failed: {field} in "
                               f"precondition: {wanted[field]}, {field} in object meta: "
                               f"{meta.get(field)}", kind=route.resource.name,
                               name=str(route.name), group=route.resource.group)

    # -- representations -----------------------------------------------------------------

    @staticmethod
    def _list(r: Resource, items: list[Obj], rv: str) -> Obj:
        return {"kind": f"{r.kind}List", "apiVersion": r.api_version,
                "metadata": {"resourceVersion": rv}, "items": items}

    def _respond_list(self, route: Route, items: list[Obj], rv: str,
                      query: dict[str, str]) -> None:
        accept = Accept.parse(self.headers.get("Accept", ""))
        if accept.as_kind == "Table":
            found = table(route.strategy.columns, items, rv,
                          query.get("includeObject", "Metadata"))
            found["apiVersion"] = f"meta.k8s.io/{accept.version}"
            self._json(200, found)
        elif accept.as_kind.startswith("PartialObjectMetadata"):
            self._json(200, {"kind": "PartialObjectMetadataList",
                             "apiVersion": f"meta.k8s.io/{accept.version}",
                             "metadata": {"resourceVersion": rv},
                             "items": [partial(i, accept.version) for i in items]})
        else:
            self._json(200, self._list(route.resource, items, rv))

    def _respond_object(self, route: Route, obj: Obj, query: dict[str, str]) -> None:
        accept = Accept.parse(self.headers.get("Accept", ""))
        if accept.as_kind == "Table":
            found = table(route.strategy.columns, [obj],
                          obj["metadata"].get("resourceVersion", ""),
                          query.get("includeObject", "Metadata"))
            found["apiVersion"] = f"meta.k8s.io/{accept.version}"
            self._json(200, found)
        elif accept.as_kind.startswith("PartialObjectMetadata"):
            self._json(200, partial(obj, accept.version))
        else:
            self._json(200, obj)

    # -- watch ---------------------------------------------------------------------------

    def _watch(self, route: Route, query: dict[str, str]) -> None:
        """Stream events as chunked newline-delimited JSON until timeoutSeconds, the client
        leaving, or the server stopping. A too-old resourceVersion is an ERROR event."""
        try:
            timeout = float(query.get("timeoutSeconds") or DEFAULT_WATCH_TIMEOUT)
        except ValueError:
            raise bad_request("timeoutSeconds must be a number of seconds") from None
        try:
            w: Watch | None = self.server.store.watch(
                route.resource.name, route.namespace, query.get("resourceVersion", ""),
                query.get("labelSelector", ""), query.get("fieldSelector", ""))
        except ApiError as e:
            if e.code != 410:
                raise
            w, expired = None, e
        if w is not None:
            with self.server.lock:
                self.server.watches.add(w)
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Cache-Control", "no-cache, private")
            self.end_headers()
            if w is None:
                self._chunk({"type": "ERROR", "object": expired.status()})
            else:
                for event in self._events(w, time.monotonic() + timeout, route, query):
                    self._chunk(event)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            self.close_connection = True
        finally:
            if w is not None:
                w.close()
                with self.server.lock:
                    self.server.watches.discard(w)
                    self.server.lock.notify_all()

    def _events(self, w: Watch, deadline: float, route: Route,
                query: dict[str, str]) -> Iterator[Obj]:
        accept, first = Accept.parse(self.headers.get("Accept", "")), True
        while not self.server.stopping.is_set() and (left := deadline - time.monotonic()) > 0:
            event = w.get(timeout=min(POLL, left))
            if event is None:
                if w.closed or self._client_gone():
                    return
                continue
            obj = event["object"]
            if accept.as_kind == "Table":
                obj = table(route.strategy.columns, [obj],
                            obj["metadata"]["resourceVersion"],
                            query.get("includeObject", "Metadata"), with_definitions=first)
                obj["apiVersion"] = f"meta.k8s.io/{accept.version}"
                first = False
            elif accept.as_kind.startswith("PartialObjectMetadata"):
                obj = partial(obj, accept.version)
            yield {"type": event["type"], "object": obj}

    def _chunk(self, event: Obj) -> None:
        data = json.dumps(event).encode() + b"\n"
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _client_gone(self) -> bool:
        readable, _, _ = select.select([self.connection], [], [], 0)
        if not readable:
            return False
        try:
            if isinstance(self.connection, ssl.SSLSocket):  # TLS cannot peek: a watch's
                self.connection.setblocking(False)  # client sends nothing but its close
                try:
                    return self.connection.recv(1) == b""
                except ssl.SSLWantReadError:
                    return False  # a TLS record with no data in it
                finally:
                    self.connection.setblocking(True)
                    self.connection.settimeout(self.timeout)
            return bool(self.connection.recv(1, socket.MSG_PEEK) == b"")
        except OSError:
            return True


class KubeApiServer:
    """The API served over HTTP on a daemon thread; several servers may share one store."""

    def __init__(self, store: Store, host: str = "127.0.0.1", port: int = 0, *,
                 sock: socket.socket | None = None, tokens: Tokens | None = None,
                 tls: ssl.SSLContext | None = None) -> None:
        """Bind `host:port`, or serve on `sock`, a socket already bound and listening (for
        an address in another network namespace, which this process cannot bind from its
        own). With `tokens`, every request needs a bearer token and its user's rules; with
        `tls`, HTTPS (kubectl sends tokens over nothing else)."""
        if sock is None:
            self._httpd = _HTTPServer((host, port), _Handler)
        else:
            self._httpd = _HTTPServer(sock.getsockname()[:2], _Handler, bind_and_activate=False)
            self._httpd.socket.close()
            self._httpd.socket = sock
            self._httpd.server_address = sock.getsockname()
        self._httpd.store = store
        self._httpd.tokens = tokens
        self._httpd.tls = tls
        self._httpd.stopping = threading.Event()
        self._httpd.connections = set()
        self._httpd.watches = set()
        self._httpd.lock = threading.Condition()
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port served, so a restarted server can take it again."""
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        host = str(host)
        scheme = "https" if self._httpd.tls is not None else "http"
        return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"

    def start(self) -> KubeApiServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.1},
                                        name=f"kubeapi {self.url}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, end watch streams cleanly, then drop open connections."""
        httpd = self._httpd
        httpd.stopping.set()
        with httpd.lock:
            watches = list(httpd.watches)
        for w in watches:
            w.close()  # wakes the streaming thread at once
        if self._thread is not None:
            httpd.shutdown()
            self._thread.join()
            self._thread = None
        httpd.server_close()
        with httpd.lock:
            httpd.lock.wait_for(lambda: not httpd.watches, timeout=STOP_GRACE)
            open_now = list(httpd.connections)
        for conn in open_now:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
