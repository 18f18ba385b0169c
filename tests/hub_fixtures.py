"""An offline stand-in for the Hugging Face Hub, for tests that run real huggingface_hub code.

`FakeHub` is a local HTTP server answering what `hf_hub_download`, `snapshot_download`, `HfApi.model_info` and
`HfApi.list_repo_files` request, with the headers and error codes huggingface_hub relies on. Files matching
`LFS_PATTERNS` (hub_cache.py, which also builds a cache folder) are served like LFS files on the Hub: the resolve URL
redirects to a second server standing in for the CDN (another origin, so huggingface_hub drops the
Authorization header there as it does for the real CDN).

Use it as a context manager or through the `fake_hub` fixture (import it into the test module)::

    with FakeHub() as hub:
        hub.patch_endpoint(monkeypatch)
        hub.add_repo("org/model", {"config.json": b"{}"})
"""
from __future__ import annotations

import json
import os
import re
import socket
import sys
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

import pytest

from hub_cache import Blob, blobs_of, commit_hash, git_oid

_DATE = "2024-01-01T00:00:00.000Z"


@dataclass
class HubRequest:
    """A request received by `FakeHub`: method, unquoted path without query, query, headers (lower-case names)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]

    @property
    def range(self) -> str | None:
        return self.headers.get("range")


@dataclass
class _Repo:
    private: bool
    gated: bool
    token: str | None
    refs: dict[str, str] = field(default_factory=dict)
    commits: dict[str, dict[str, Blob]] = field(default_factory=dict)

    def allows(self, token: str | None) -> bool:
        return self.token is not None and token == self.token


class _HttpError(Exception):
    def __init__(self, status: int, code: str | None, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message = status, message
        self.headers = {**({"X-Error-Code": code} if code else {}), **(headers or {})}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        self.server.connections.add(self.connection)

    def finish(self):
        self.server.connections.discard(self.connection)
        super().finish()

    def do_GET(self):
        self.server.hub._serve(self, self.server.role)

    do_HEAD = do_GET

    def log_message(self, *args):
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, hub: FakeHub, role: str):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.hub, self.role, self.connections = hub, role, set()
        self.url = f"http://127.0.0.1:{self.server_port}"
        threading.Thread(target=self.serve_forever, args=(0.05,), name=f"fake-hub-{role}", daemon=True).start()


def _flag(query: dict[str, list[str]], name: str) -> bool:
    return query.get(name, ["false"])[-1].lower() == "true"


def _send(handler: BaseHTTPRequestHandler, status: int, headers: dict[str, str], body: bytes = b"",
          limit: int | None = None, hold: tuple[int, threading.Event] | None = None) -> None:
    """Send a response; with `limit`, close the connection after that many body bytes; with `hold` = (n, event),
    wait for `event` after the first n body bytes."""
    handler.send_response(status)
    for name, value in {**headers, "Content-Length": str(len(body)), "X-Request-Id": str(uuid.uuid4())}.items():
        handler.send_header(name, value)
    handler.end_headers()
    if handler.command == "HEAD":
        return
    body = body[:limit]
    if hold is not None:
        handler.wfile.write(body[:hold[0]])
        handler.wfile.flush()
        hold[1].wait(timeout=60)
        body = body[hold[0]:]
    handler.wfile.write(body)
    if limit is not None:
        handler.close_connection = True


class FakeHub:
    """A local Hugging Face Hub serving registered model repos (started on creation; `close()` or `with` stops it).

    `requests` lists every `HubRequest` received, `counts` counts requests per unquoted path (all methods).
    huggingface_hub also asks `/api/agent-harnesses` once per process for its user agent: answered 404, as unknown.
    """

    def __init__(self):
        self._repos: dict[str, _Repo] = {}
        self._lfs: dict[str, bytes] = {}
        self._fail: dict[str, list[int]] = {}
        self._hold: dict[str, tuple[int, threading.Event]] = {}
        self._lock = threading.Lock()
        self.requests: list[HubRequest] = []
        self.counts: Counter[str] = Counter()
        self._hub, self._cdn = _Server(self, "hub"), _Server(self, "cdn")

    @property
    def url(self) -> str:
        """The endpoint, for HF_ENDPOINT."""
        return self._hub.url

    def __enter__(self) -> FakeHub:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop both servers and drop their open connections."""
        for server in (self._hub, self._cdn):
            server.shutdown()
            server.server_close()
            for conn in list(server.connections):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def add_repo(self, repo_id: str, files: dict[str, bytes | Path], private: bool = False, gated: bool = False,
                 token: str | None = None, revision: str = "main") -> str:
        """Register a model repo (or another branch `revision` of it) and return its commit hash.

        A private repo is invisible without `Authorization: Bearer <token>`; a gated one lists its files but refuses
        their content without it. Repo settings are those of the latest call.
        """
        blobs = blobs_of(files)
        commit = commit_hash(blobs)
        with self._lock:
            repo = self._repos.setdefault(repo_id, _Repo(private, gated, token))
            repo.private, repo.gated, repo.token = private, gated, token
            repo.refs[revision] = commit
            repo.commits[commit] = blobs
            self._lfs.update({b.sha256: b.data for b in blobs.values() if b.lfs})
        return commit

    def fail_after(self, filename: str, n_bytes: int, times: int = 1) -> None:
        """Make the next `times` GETs of `filename`'s content close the connection after `n_bytes` bytes of body."""
        with self._lock:
            self._fail[filename] = [n_bytes] * times

    def hold_after(self, filename: str, n_bytes: int) -> threading.Event:
        """Make the next GET of `filename`'s content pause after `n_bytes` bytes of body until the returned event is
        set (or a minute passes): a download caught in the middle, whatever the machine's speed."""
        release = threading.Event()
        with self._lock:
            self._hold[filename] = (n_bytes, release)
        return release

    def patch_endpoint(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Point huggingface_hub at this server: HF_ENDPOINT and every value derived from it at import time.

        Those are `constants.ENDPOINT`, `HUGGINGFACE_CO_URL_TEMPLATE` (used by `hf_hub_url`), `HF_URL_HOSTS`,
        `utils._http._HUB_ORIGINS` (redirects that keep auth), `ENDPOINT` imported into loaded submodules
        (`cli.auth`, `utils._git_credential`), the endpoint of module-level `HfApi` instances (`hf_api.api`, whose
        methods are `huggingface_hub.model_info`, `list_repo_files`, ...) and of the module-level `hffs`.
        """
        from huggingface_hub import HfApi, constants
        from huggingface_hub.utils import _http

        monkeypatch.setenv("HF_ENDPOINT", self.url)
        monkeypatch.setattr(constants, "ENDPOINT", self.url)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                            self.url + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setattr(constants, "HF_URL_HOSTS", constants.HF_URL_HOSTS | {"127.0.0.1"})
        monkeypatch.setattr(_http, "_HUB_ORIGINS", _http._HUB_ORIGINS | {_http._url_origin(self.url)})
        clients = {}
        for name, module in list(sys.modules.items()):
            namespace = getattr(module, "__dict__", {})
            if name.startswith("huggingface_hub.") and module is not constants and isinstance(
                    namespace.get("ENDPOINT"), str):
                monkeypatch.setattr(module, "ENDPOINT", self.url)
            clients.update({id(v): v for v in list(namespace.values()) if issubclass(type(v), HfApi)})
        if fs_module := sys.modules.get("huggingface_hub.hf_file_system"):
            clients.update({id(c): c for c in (fs_module.hffs, fs_module.hffs._api)})
        for client in clients.values():
            monkeypatch.setattr(client, "endpoint", self.url)

    # Request handling

    def _serve(self, handler: BaseHTTPRequestHandler, role: str) -> None:
        url = urlsplit(handler.path)
        headers = {k.lower(): v for k, v in handler.headers.items()}
        path, query = unquote(url.path), parse_qs(url.query)
        with self._lock:
            self.requests.append(HubRequest(handler.command, path, {k: v[-1] for k, v in query.items()}, headers))
            self.counts[path] += 1
        segments = [unquote(s) for s in url.path.split("/")[1:]]
        auth = headers.get("authorization", "")
        token = auth[len("Bearer "):].strip() if auth.startswith("Bearer ") else None
        try:
            resolve = segments.index("resolve", 1) if "resolve" in segments[1:-2] else None
            if role == "cdn" and segments[0] == "lfs" and len(segments) > 2 and segments[1] in self._lfs:
                self._send_content(handler, self._lfs[segments[1]], "/".join(segments[2:]), {})
            elif role == "hub" and segments[:2] == ["api", "models"] and len(segments) > 2:
                self._api(handler, segments[2:], query, token)
            elif role == "hub" and resolve:
                self._resolve(handler, "/".join(segments[:resolve]), segments[resolve + 1],
                              "/".join(segments[resolve + 2:]), token)
            else:
                raise _HttpError(404, None, "Not Found")
        except _HttpError as e:
            body = json.dumps({"error": e.message}).encode()
            _send(handler, e.status, {"Content-Type": "application/json; charset=utf-8", "X-Error-Message": e.message,
                                      **e.headers}, body)

    def _repo(self, repo_id: str, token: str | None) -> _Repo:
        repo = self._repos.get(repo_id)
        if repo is None or (repo.private and not repo.allows(token)):
            raise _HttpError(401 if token is None else 404, "RepoNotFound", "Repository not found")
        return repo

    @staticmethod
    def _commit(repo: _Repo, revision: str) -> str:
        commit = repo.refs.get(revision, revision)
        if commit not in repo.commits:
            raise _HttpError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return commit

    def _api(self, handler, segments: list[str], query: dict[str, list[str]], token: str | None) -> None:
        """`/api/models/{repo_id}[/revision/{rev}]` (model info) and `/api/models/{repo_id}/tree/{rev}[/{path}]`."""
        split = 1 if len(segments) > 1 and segments[1] in ("revision", "tree") else 2
        repo_id, rest = "/".join(segments[:split]), segments[split:]
        repo = self._repo(repo_id, token)
        if not rest:
            rest = ["revision", "main"]
        if rest[0] not in ("revision", "tree") or len(rest) < 2 or (rest[0] == "revision" and len(rest) > 2):
            raise _HttpError(404, None, "Not Found")
        commit = self._commit(repo, rest[1])
        blobs = repo.commits[commit]
        if rest[0] == "revision":
            body = self._model_info(repo_id, repo, commit, blobs, _flag(query, "blobs"))
        else:
            body = self._tree(blobs, "/".join(rest[2:]), _flag(query, "recursive"))
        _send(handler, 200, {"Content-Type": "application/json; charset=utf-8"}, json.dumps(body).encode())

    @staticmethod
    def _model_info(repo_id: str, repo: _Repo, commit: str, blobs: dict[str, Blob], withblobs_of: bool) -> dict:
        siblings = []
        for name, blob in sorted(blobs.items()):
            sibling = {"rfilename": name}
            if withblobs_of:
                sibling.update(blobId=blob.oid, size=len(blob.data))
                if blob.lfs:
                    sibling["lfs"] = blob.lfs_info()
            siblings.append(sibling)
        return {"_id": commit[:24], "id": repo_id, "modelId": repo_id, "author": repo_id.split("/")[0], "sha": commit,
                "lastModified": _DATE, "createdAt": _DATE, "private": repo.private,
                "gated": "auto" if repo.gated else False, "disabled": False, "downloads": 0, "likes": 0, "tags": [],
                "siblings": siblings, "usedStorage": sum(len(b.data) for b in blobs.values())}

    @staticmethod
    def _tree(blobs: dict[str, Blob], path: str, recursive: bool) -> list[dict]:
        prefix = path + "/" if path else ""
        files, folders = [], set()
        for name, blob in sorted(blobs.items()):
            if not name.startswith(prefix):
                continue
            parts = name[len(prefix):].split("/")
            depth = len(parts) if recursive else min(2, len(parts))
            folders.update(prefix + "/".join(parts[:i]) for i in range(1, depth))
            if recursive or len(parts) == 1:
                entry = {"type": "file", "oid": blob.oid, "size": len(blob.data), "path": name}
                if blob.lfs:
                    entry["lfs"] = {"oid": blob.sha256, "size": len(blob.data), "pointerSize": len(blob.pointer)}
                files.append(entry)
        if path and not files and not folders:
            raise _HttpError(404, "EntryNotFound", f"{path} does not exist on the Hub")
        folder_entries = [{"type": "directory", "oid": git_oid(d.encode()), "size": 0, "path": d}
                          for d in sorted(folders)]
        return folder_entries + files

    def _resolve(self, handler, repo_id: str, revision: str, filename: str, token: str | None) -> None:
        """`/{repo_id}/resolve/{revision}/{filename}`: the file, or for LFS files a redirect to the CDN."""
        repo = self._repo(repo_id, token)
        commit = self._commit(repo, revision)
        if repo.gated and not repo.allows(token):
            raise _HttpError(401 if token is None else 403, "GatedRepo",
                             f"Access to model {repo_id} is restricted. You must have access to it and be "
                             "authenticated to access it. Please log in.")
        blob = repo.commits[commit].get(filename)
        if blob is None:
            raise _HttpError(404, "EntryNotFound", "Entry not found", {"X-Repo-Commit": commit})
        if blob.lfs:
            _send(handler, 302, {"Location": f"{self._cdn.url}/lfs/{blob.sha256}/{quote(filename)}",
                                 "X-Repo-Commit": commit, "X-Linked-Etag": f'"{blob.sha256}"',
                                 "X-Linked-Size": str(len(blob.data)), "Content-Type": "text/plain; charset=utf-8"},
                  b"Found. Redirecting")
        else:
            self._send_content(handler, blob.data, filename, {"X-Repo-Commit": commit, "ETag": f'"{blob.oid}"'})

    def _send_content(self, handler, data: bytes, filename: str, headers: dict[str, str]) -> None:
        """Serve file bytes with `Range` support, the drop set by `fail_after` and the pause set by `hold_after`."""
        headers = {**headers, "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream",
                   "Content-Disposition": f"inline; filename*=UTF-8''{quote(filename.rsplit('/', 1)[-1])}"}
        status, body = 200, data
        if range_header := handler.headers.get("Range"):
            match = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", range_header)
            start, end = (match.groups() if match else ("", ""))
            first = max(len(data) - int(end), 0) if not start and end else int(start or -1)
            last = min(int(end), len(data) - 1) if start and end else len(data) - 1
            if not 0 <= first <= last:
                raise _HttpError(416, None, "Range Not Satisfiable", {"Content-Range": f"bytes */{len(data)}"})
            status, body = 206, data[first:last + 1]
            headers["Content-Range"] = f"bytes {first}-{last}/{len(data)}"
        limit = hold = None
        if handler.command == "GET":
            with self._lock:
                pending = self._fail.get(filename)
                limit = pending.pop() if pending else None
                hold = self._hold.pop(filename, None)
        _send(handler, status, headers, body, limit, hold)


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch):
    """A running `FakeHub` that huggingface_hub talks to for the duration of the test."""
    with FakeHub() as hub:
        hub.patch_endpoint(monkeypatch)
        yield hub
