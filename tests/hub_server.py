"""A local stand-in for the Hugging Face Hub: the HTTP calls that `huggingface_hub` makes to push and pull a model.

Serves, from memory: repo creation (`/api/repos/create`), README metadata validation (`/api/validate-yaml`), the
upload-mode query (`preupload`), the LFS batch API with basic PUT uploads, the ndjson commit endpoint, repo info and
tree listings, and `resolve/` downloads (HEAD and GET, with the `X-Repo-Commit`/`ETag` headers the client reads).
Large-file rules follow the Hub's default `.gitattributes`: `*.safetensors`, `*.arrow`, `*.npy`, ... go through LFS.
Every request is logged; anything else gets a 404 and lands in `unhandled`, so a test can assert that the client
used no call this server does not know.

Point `huggingface_hub` at it with `use_local_hub(monkeypatch, hub, cache_dir)`: its endpoint constants are read at
import, so they are patched in place, as `HF_ENDPOINT` would have set them. Also serves `/api/agent-harnesses`,
which `huggingface_hub` fetches (best effort) for its user agent.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

USER = "tester"
LFS_SUFFIXES = (
    ".safetensors",
    ".bin",
    ".arrow",
    ".npy",
    ".pt",
    ".pth",
    ".parquet",
    ".h5",
    ".onnx",
    ".msgpack",
)
LFS_MIN_SIZE = 10 * 1024 * 1024  # the Hub sends files above 10 MB through LFS whatever their name
GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class StoredFile:
    data: bytes
    lfs: bool

    @property
    def oid(self) -> str:
        """What the Hub reports as the file's ETag: the sha256 for LFS files, the git blob id otherwise."""
        return hashlib.sha256(self.data).hexdigest() if self.lfs else git_blob_sha1(self.data)


@dataclass
class Commit:
    oid: str
    message: str
    added: list[str]  # paths committed in this commit, regular and LFS
    lfs: list[str]  # the subset that went through LFS
    deleted: list[str]


@dataclass
class Repo:
    files: dict[str, StoredFile] = field(default_factory=dict)
    commits: list[Commit] = field(default_factory=list)

    @property
    def head(self) -> str:
        return self.commits[-1].oid


class LocalHub:
    """The server and its state: `repos` (by id), `requests` ((method, path) in order) and `unhandled`."""

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.lfs_store: dict[str, bytes] = {}
        self.requests: list[tuple[str, str]] = []
        self.unhandled: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> LocalHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # ---- state changes ---------------------------------------------------------------------------------------
    def create_repo(self, repo_id: str) -> bool:
        """Create `repo_id` with the initial commit the Hub makes (a `.gitattributes`); False if it exists."""
        with self._lock:
            if repo_id in self.repos:
                return False
            repo = Repo(files={".gitattributes": StoredFile(GITATTRIBUTES, lfs=False)})
            repo.commits.append(
                Commit(_commit_id(repo.files, "initial"), "initial commit", [".gitattributes"], [], [])
            )
            self.repos[repo_id] = repo
            return True

    def commit(self, repo_id: str, lines: list[dict[str, Any]]) -> Commit:
        """Apply an ndjson commit payload; raises `KeyError` naming an LFS object that was never uploaded."""
        with self._lock:
            repo = self.repos[repo_id]
            header = next(line["value"] for line in lines if line["key"] == "header")
            files = dict(repo.files)
            added, lfs, deleted = [], [], []
            for line in lines:
                key, value = line["key"], line["value"]
                if key == "file":
                    files[value["path"]] = StoredFile(base64.b64decode(value["content"]), lfs=False)
                    added.append(value["path"])
                elif key == "lfsFile":
                    files[value["path"]] = StoredFile(self.lfs_store[value["oid"]], lfs=True)
                    added.append(value["path"])
                    lfs.append(value["path"])
                elif key == "deletedFile":
                    files.pop(value["path"])
                    deleted.append(value["path"])
                elif key == "deletedFolder":
                    prefix = value["path"].rstrip("/") + "/"
                    deleted += [path for path in files if path.startswith(prefix)]
                    files = {path: f for path, f in files.items() if not path.startswith(prefix)}
            commit = Commit(_commit_id(files, header["summary"]), header["summary"], added, lfs, deleted)
            repo.files = files
            repo.commits.append(commit)
            return commit


def _commit_id(files: dict[str, StoredFile], message: str) -> str:
    digest = hashlib.sha1(message.encode())
    for path in sorted(files):
        digest.update(path.encode() + b"\0" + files[path].oid.encode())
    return digest.hexdigest()


_REPO = r"(?P<repo>[^/]+/[^/]+)"


def _make_handler(hub: LocalHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        routes: list[tuple[str, tuple[str, ...], Any]] = []  # (path regex, methods, handler), set below

        def log_message(self, *args: Any) -> None:  # keep pytest's output clean
            pass

        # ---- plumbing ------------------------------------------------------------------------------------
        def _route(self, method: str) -> None:
            url = urlsplit(self.path)
            path = unquote(url.path)
            hub.requests.append((method, path))
            body = self._read_body() if method in ("POST", "PUT") else b""
            for pattern, allowed, handler in self.routes:
                match = re.fullmatch(pattern, path)
                if match and method in allowed:
                    handler(self, match, body, parse_qs(url.query), method)
                    return
            hub.unhandled.append((method, path))
            self._send(404, {"error": f"local hub: no route for {method} {path}"})

        def _read_body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while (size := int(self.rfile.readline().split(b";")[0].strip(), 16)) > 0:
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                self.rfile.readline()
                return b"".join(chunks)
            return self.rfile.read(int(self.headers.get("Content-Length", 0)))

        def _send(
            self,
            status: int,
            payload: Any = None,
            headers: dict[str, str] | None = None,
            raw: bytes | None = None,
        ) -> None:
            data = raw if raw is not None else json.dumps(payload).encode()
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if raw is None:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":  # a HEAD answer carries the headers only
                self.wfile.write(data)

        def _repo(self, repo_id: str, revision: str | None = None) -> Repo | None:
            repo = hub.repos.get(repo_id)
            if repo is None:
                self._send(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
                return None
            if revision not in (None, "main", *(c.oid for c in repo.commits)):
                self._send(404, {"error": "Invalid rev id"}, {"X-Error-Code": "RevisionNotFound"})
                return None
            return repo

        def do_GET(self) -> None:
            self._route("GET")

        def do_HEAD(self) -> None:
            self._route("HEAD")

        def do_POST(self) -> None:
            self._route("POST")

        def do_PUT(self) -> None:
            self._route("PUT")

        # ---- endpoints ---------------------------------------------------------------------------------------
        def create_repo(self, match: re.Match, body: bytes, query: dict, method: str) -> None:
            payload = json.loads(body)
            repo_id = f"{payload.get('organization') or USER}/{payload['name']}"
            url = f"{hub.endpoint}/{repo_id}"
            if hub.create_repo(repo_id):
                self._send(200, {"url": url, "name": repo_id, "id": repo_id})
            else:
                self._send(409, {"error": "You already created this model repo", "url": url})

        def agent_harnesses(self, match: re.Match, body: bytes, query: dict, method: str) -> None:
            # huggingface_hub fetches this registry (best effort, once a day) to name the agent in its user agent.
            self._send(200, {"standardEnvVars": [], "harnesses": {}})

        def validate_yaml(self, match: re.Match, body: bytes, query: dict, method: str) -> None:
            self._send(200, {"errors": [], "warnings": []})

        def preupload(self, match: re.Match, body: bytes, query: dict, method: str) -> None:
            if (repo := self._repo(match["repo"], match["rev"])) is None:
                return
            answers = []
            for entry in json.loads(body)["files"]:
                lfs = entry["path"].endswith(LFS_SUFFIXES) or entry["size"] >= LFS_MIN_SIZE
                existing = repo.files.get(entry["path"])
                answers.append(
                    {
                        "path": entry["path"],
                        "uploadMode": "lfs" if lfs else "regular",
                        "shouldIgnore": False,
                        "oid": existing.oid if existing else None,
                    }
                )
            self._send(200, {"files": answers})

        def lfs_batch(self, match: re.Match, body: bytes, query: dict, method: str) -> None:
            if self._repo(match["repo"]) is None:
                return
            objects = []
            for obj in json.loads(body)["objects"]:
                entry = {"oid": obj["oid"], "size": obj["size"]}
                if (
                    obj["oid"] not in hub.lfs_store
                ):  # already stored objects get no actions: nothing to upload
                    entry["actions"] = {"upload": {"href": f"{hub.endpoint}/_lfs/{obj['oid']}"}}
                objects.append(entry)
            self._send(200, {"transfer": "basic", "objects": objects})

        def lfs_upload(self, match: re.Match, body: bytes, query: dict, method: str) -> None:
            if hashlib.sha256(body).hexdigest() != match["oid"]:
                self._send(400, {"error": "sha256 of the uploaded content does not match the LFS oid"})
                return
            hub.lfs_store[match["oid"]] = body
            self._send(200, {})

        def commit(self, match: re.Match, body: bytes, query: dict, method: str) -> None:
            if self._repo(match["repo"], match["rev"]) is None:
                return
            lines = [json.loads(line) for line in body.splitlines() if line.strip()]
            try:
                commit = hub.commit(match["repo"], lines)
            except KeyError as missing:
                self._send(422, {"error": f"LFS object {missing} was never uploaded"})
                return
            self._send(
                200,
                {
                    "commitUrl": f"{hub.endpoint}/{match['repo']}/commit/{commit.oid}",
                    "commitOid": commit.oid,
                    "pullRequestUrl": None,
                },
            )

        def repo_info(self, match: re.Match, body: bytes, query: dict, method: str) -> None:
            if (repo := self._repo(match["repo"], match["rev"])) is None:
                return
            siblings = [{"rfilename": path} for path in sorted(repo.files)]
            self._send(
                200,
                {
                    "id": match["repo"],
                    "modelId": match["repo"],
                    "sha": repo.head,
                    "private": False,
                    "siblings": siblings,
                },
            )

        def tree(self, match: re.Match, body: bytes, query: dict, method: str) -> None:
            if (repo := self._repo(match["repo"], match["rev"])) is None:
                return
            base = (match["path"] or "").strip("/")
            prefix = f"{base}/" if base else ""
            recursive = query.get("recursive", ["false"])[0].lower() == "true"
            entries: dict[str, dict[str, Any]] = {}
            for path, stored in sorted(repo.files.items()):
                if not path.startswith(prefix):
                    continue
                parts = path[len(prefix) :].split("/")
                for depth in range(1, len(parts)):  # the folders on the way
                    folder = prefix + "/".join(parts[:depth])
                    if recursive or depth == 1:
                        entries.setdefault(
                            folder, {"type": "directory", "path": folder, "oid": "0" * 40, "size": 0}
                        )
                if recursive or len(parts) == 1:
                    entry = {
                        "type": "file",
                        "path": path,
                        "size": len(stored.data),
                        "oid": git_blob_sha1(stored.data),
                    }
                    if stored.lfs:
                        entry["lfs"] = {"oid": stored.oid, "size": len(stored.data), "pointerSize": 130}
                    entries[path] = entry
            self._send(200, list(entries.values()))

        def resolve(self, match: re.Match, body: bytes, query: dict, method: str) -> None:
            if (repo := self._repo(match["repo"], match["rev"])) is None:
                return
            stored = repo.files.get(match["path"])
            if stored is None:
                self._send(
                    404,
                    {"error": "Entry not found"},
                    {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": repo.head},
                )
                return
            headers = {"X-Repo-Commit": repo.head, "ETag": f'"{stored.oid}"'}
            if stored.lfs:
                headers.update({"X-Linked-Etag": f'"{stored.oid}"', "X-Linked-Size": str(len(stored.data))})
            self._send(200, headers=headers, raw=stored.data)

    Handler.routes = [
        (r"/api/repos/create", ("POST",), Handler.create_repo),
        (r"/api/validate-yaml", ("POST",), Handler.validate_yaml),
        (r"/api/agent-harnesses", ("GET",), Handler.agent_harnesses),
        (rf"/api/models/{_REPO}/preupload/(?P<rev>[^/]+)", ("POST",), Handler.preupload),
        (rf"/{_REPO}\.git/info/lfs/objects/batch", ("POST",), Handler.lfs_batch),
        (r"/_lfs/(?P<oid>[0-9a-f]{64})", ("PUT",), Handler.lfs_upload),
        (rf"/api/models/{_REPO}/commit/(?P<rev>[^/]+)", ("POST",), Handler.commit),
        (rf"/api/models/{_REPO}(?:/revision/(?P<rev>[^/]+))?", ("GET",), Handler.repo_info),
        (rf"/api/models/{_REPO}/tree/(?P<rev>[^/]+)(?P<path>/.*)?", ("GET",), Handler.tree),
        (rf"/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", ("GET", "HEAD"), Handler.resolve),
    ]
    return Handler


def use_local_hub(monkeypatch: Any, hub: LocalHub, cache_dir: Path) -> None:
    """Send every `huggingface_hub` (and transformers, peft) call to `hub`, online, with a fresh cache."""
    from huggingface_hub import constants
    from transformers.utils import hub as transformers_hub

    monkeypatch.setattr(constants, "ENDPOINT", hub.endpoint)
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.endpoint + "/{repo_id}/resolve/{revision}/{filename}"
    )
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(
        constants, "HF_HUB_DISABLE_XET", True
    )  # Xet needs a CAS server; plain LFS is what we serve
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache_dir))
    monkeypatch.setattr(transformers_hub, "_hf_api", None)  # transformers' shared HfApi caches the endpoint
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
