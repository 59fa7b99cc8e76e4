#!/usr/bin/env python3
"""fake_hub.py: a small stand-in for the Hugging Face Hub, for cge's `cge pull` tests.

Python standard library only. Listens on 127.0.0.1 at a free port (written to --port-file) and
serves model folders as Hub repositories, the way huggingface.co answers huggingface_hub:

  GET  /api/models/ORG/NAME/revision/REV[?blobs=true]   {"id", "sha", "siblings": [{"rfilename",
                                                        "size", "blobId", "lfs": {"sha256",
                                                        "size", "pointerSize"}}]}
  HEAD|GET /ORG/NAME/resolve/REV/PATH                   small files: 200, ETag = git blob id;
                                                        LFS files: 302 to the storage host
                                                        (http://localhost:PORT/cdn/...), with
                                                        X-Linked-Etag (SHA-256), X-Linked-Size
  GET  /cdn/SHA256?r=ORG/NAME&p=PATH                    the bytes, with Range (206)
  X-Repo-Commit on every resolve answer; 404 with X-Error-Code RepoNotFound / RevisionNotFound /
  EntryNotFound; gated repositories answer 401 (X-Error-Code: GatedRepo) without the token.

A file is LFS when its extension is one the Hub stores in LFS (.safetensors, .bin, .model, ...)
or it is 10 MB or more. The commit id is a SHA-1 over the repository's files, so it is stable.

Test control (not part of the Hub): POST /_control with a JSON object replaces the fault
settings; GET /_stats gives every request seen (method, path, range, auth) and the body bytes
served per file; POST /_reset clears the stats. Faults:
  "cut": {"PATH": N}        the next transfer of PATH stops after N body bytes (connection closed)
  "corrupt": ["PATH"]       PATH's bytes are served with one byte flipped
  "extra": ["PATH"]         PATH is served with 16 bytes more than announced
  "ignore_range": true      Range is ignored (200 with the whole file)
  "redirect_loop": true     the storage URL redirects to itself forever
  "no_commit": true         resolve answers carry no X-Repo-Commit
  "bad_json": true          the file list is not JSON
  "fail": {"PATH": N}       the next N transfers of PATH answer 503
  "wrong_size": ["PATH"]    HEAD announces one byte more than PATH has
  "head_loop": true         resolve answers redirect (relative) to themselves forever
The server exits by itself after --lifetime seconds or when its parent process is gone.
"""
import argparse
import hashlib
import json
import os
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LFS_EXT = (".safetensors", ".bin", ".model", ".onnx", ".h5", ".msgpack", ".gguf", ".ot", ".pt")


def git_blob_id(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class Repo:
    def __init__(self, repo_id, files, gated):
        self.id = repo_id
        self.gated = gated
        self.files = {}  # path -> dict(data, lfs, sha256, blob_id)
        h = hashlib.sha1(repo_id.encode())
        for path in sorted(files):
            data = files[path]
            lfs = path.endswith(LFS_EXT) or len(data) >= 10_000_000
            sha = hashlib.sha256(data).hexdigest()
            if lfs:
                pointer = ("version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n"
                           % (sha, len(data))).encode()
                blob_id = git_blob_id(pointer)
                psize = len(pointer)
            else:
                blob_id = git_blob_id(data)
                psize = 0
            self.files[path] = dict(data=data, lfs=lfs, sha256=sha, blob_id=blob_id, psize=psize)
            h.update(path.encode() + b"\0" + blob_id.encode())
        self.commit = h.hexdigest()

    def siblings(self):
        out = []
        for path, f in self.files.items():
            s = {"rfilename": path, "blobId": f["blob_id"]}
            if f["lfs"]:
                s["size"] = f["psize"]
                s["lfs"] = {"sha256": f["sha256"], "size": len(f["data"]),
                            "pointerSize": f["psize"]}
            else:
                s["size"] = len(f["data"])
            out.append(s)
        return out


def load_repos(spec):
    repos = {}
    for repo_id, r in spec["repos"].items():
        files = {}
        d = r.get("dir")
        if d:
            for root, _, names in os.walk(d):
                for n in names:
                    full = os.path.join(root, n)
                    rel = os.path.relpath(full, d).replace(os.sep, "/")
                    with open(full, "rb") as fh:
                        files[rel] = fh.read()
        for rel, text in r.get("extra", {}).items():
            files[rel] = text.encode()
        repos[repo_id] = Repo(repo_id, files, r.get("gated", False))
    return repos


class State:
    def __init__(self, repos, token):
        self.repos = repos
        self.token = token
        self.lock = threading.Lock()
        self.faults = {}
        self.requests = []
        self.bytes = {}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-hub/1"

    def log_message(self, fmt, *args):  # quiet
        pass

    @property
    def st(self):
        return self.server.state

    # ---- helpers ------------------------------------------------------------------------------
    def authorized(self):
        a = self.headers.get("Authorization", "")
        return bool(self.st.token) and a == "Bearer " + self.st.token

    def record(self, kind, path):
        with self.st.lock:
            self.st.requests.append({
                "method": self.command, "kind": kind, "path": path,
                "range": self.headers.get("Range"),
                "auth": self.headers.get("Authorization") is not None,
                "auth_ok": self.authorized(),
                "host": self.headers.get("Host"),
            })

    def send(self, code, body=b"", headers=None, ctype="application/json"):
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def error(self, code, xcode, msg):
        self.send(code, json.dumps({"error": msg}).encode(),
                  {"X-Error-Code": xcode, "X-Error-Message": msg})

    def fault(self, name, default=None):
        with self.st.lock:
            return self.st.faults.get(name, default)

    def take(self, name, path):
        """One-shot fault: returns its value for path and consumes it."""
        with self.st.lock:
            m = self.st.faults.get(name, {})
            if path not in m:
                return None
            v = m[path]
            if name == "fail":
                if v <= 0:
                    return None
                m[path] = v - 1
            else:
                del m[path]
            return v

    def repo_for(self, parts):
        """parts: ORG, NAME, ... -> (repo, rest) or an error already sent."""
        for n in (2, 1):
            rid = "/".join(parts[:n])
            if rid in self.st.repos:
                return self.st.repos[rid], parts[n:]
        return None, None

    def body_of(self, repo, path):
        f = repo.files[path]
        data = f["data"]
        if path in (self.fault("corrupt") or []):
            data = bytes([data[0] ^ 0xFF]) + data[1:] if data else data
        if path in (self.fault("extra") or []):
            data = data + b"E" * 16
        return data

    def serve_bytes(self, repo, path, headers):
        data = self.body_of(repo, path)
        fail = self.take("fail", path)
        if fail:
            self.error(503, "Unavailable", "try again")
            return
        start = 0
        rng = self.headers.get("Range")
        code = 200
        if rng and not self.fault("ignore_range"):
            if not rng.startswith("bytes=") or not rng[6:].endswith("-"):
                self.send(400, b"bad range")
                return
            start = int(rng[6:-1])
            if start >= len(data):
                self.send(416, b"", {"Content-Range": "bytes */%d" % len(data)})
                return
            code = 206
            headers = dict(headers)
            headers["Content-Range"] = "bytes %d-%d/%d" % (start, len(data) - 1, len(data))
        body = data[start:]
        self.send_response(code)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        cut = self.take("cut", path)
        if cut is not None:
            body = body[:cut]
            self.close_connection = True
        # in pieces, so a cut lands mid-stream and the counts are what went out
        off = 0
        try:
            while off < len(body):
                piece = body[off:off + 65536]
                self.wfile.write(piece)
                off += len(piece)
        finally:
            with self.st.lock:
                self.st.bytes[path] = self.st.bytes.get(path, 0) + off
            if cut is not None:
                self.wfile.flush()

    # ---- routes -------------------------------------------------------------------------------
    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n) if n else b""
        if self.path == "/_control":
            with self.st.lock:
                self.st.faults = json.loads(body or b"{}")
            self.send(200, b"{}")
        elif self.path == "/_reset":
            with self.st.lock:
                self.st.requests = []
                self.st.bytes = {}
            self.send(200, b"{}")
        else:
            self.send(404, b"{}")

    def do_HEAD(self):
        self.route()

    def do_GET(self):
        if self.path == "/_stats":
            with self.st.lock:
                body = json.dumps({"requests": self.st.requests, "bytes": self.st.bytes}).encode()
            self.send(200, body)
            return
        self.route()

    def route(self):
        url = urllib.parse.urlsplit(self.path)
        parts = [urllib.parse.unquote(p) for p in url.path.split("/")[1:]]
        if parts[:2] == ["api", "models"]:
            self.api(parts[2:])
        elif parts and parts[0] == "cdn":
            self.cdn(urllib.parse.parse_qs(url.query))
        else:
            self.resolve(parts)

    def api(self, parts):
        # ORG/NAME/revision/REV (REV quoted: one path segment)
        if "revision" not in parts:
            self.error(404, "RepoNotFound", "bad API path")
            return
        i = parts.index("revision")
        rid, rev = "/".join(parts[:i]), "/".join(parts[i + 1:])
        self.record("api", rid)
        repo = self.st.repos.get(rid)
        if repo is None:
            self.error(401, "RepoNotFound", "Repository Not Found for url")
            return
        if repo.gated and not self.authorized():
            self.error(401, "GatedRepo", "Access to model %s is restricted." % rid)
            return
        if rev not in ("main", "v1", repo.commit):
            self.error(404, "RevisionNotFound", "Invalid rev id: %s" % rev)
            return
        if self.fault("bad_json"):
            self.send(200, b'{"sha": "' + repo.commit.encode() + b'", "siblings": [')
            return
        body = {"id": rid, "modelId": rid, "sha": repo.commit, "private": False,
                "gated": "manual" if repo.gated else False, "siblings": repo.siblings()}
        self.send(200, json.dumps(body).encode())

    def resolve(self, parts):
        repo, rest = self.repo_for(parts)
        if repo is None or len(rest) < 3 or rest[0] != "resolve":
            self.record("resolve", "/".join(parts))
            self.error(404 if repo else 401, "RepoNotFound", "Repository Not Found")
            return
        rev, path = rest[1], "/".join(rest[2:])
        self.record("resolve", path)
        if repo.gated and not self.authorized():
            self.error(401, "GatedRepo", "Access to model %s is restricted." % repo.id)
            return
        if rev not in ("main", "v1", repo.commit):
            self.error(404, "RevisionNotFound", "Invalid rev id: %s" % rev)
            return
        f = repo.files.get(path)
        if f is None:
            self.error(404, "EntryNotFound", "Entry not found")
            return
        if self.fault("head_loop"):
            self.send(307, b"", {"Location": urllib.parse.urlsplit(self.path).path},
                      ctype="text/plain")
            return
        size = len(f["data"]) + (1 if path in (self.fault("wrong_size") or []) else 0)
        h = {}
        if not self.fault("no_commit"):
            h["X-Repo-Commit"] = repo.commit
        if f["lfs"]:
            host = "localhost:%d" % self.server.server_address[1]
            q = urllib.parse.urlencode({"r": repo.id, "p": path})
            h["Location"] = "http://%s/cdn/%s?%s" % (host, f["sha256"], q)
            h["X-Linked-Etag"] = '"%s"' % f["sha256"]
            h["X-Linked-Size"] = str(size)
            h["ETag"] = '"%s"' % f["blob_id"]
            self.send(302, b"", h, ctype="text/plain")
            return
        h["ETag"] = '"%s"' % f["blob_id"]
        if self.command == "HEAD":
            self.send_response(200)
            for k, v in h.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            return
        self.serve_bytes(repo, path, h)

    def cdn(self, q):
        rid, path = q.get("r", [""])[0], q.get("p", [""])[0]
        self.record("cdn", path)
        if self.fault("redirect_loop"):
            self.send(302, b"", {"Location": self.path}, ctype="text/plain")
            return
        repo = self.st.repos.get(rid)
        if repo is None or path not in repo.files:
            self.send(404, b"NoSuchKey", ctype="text/plain")
            return
        self.serve_bytes(repo, path, {"ETag": '"%s"' % repo.files[path]["sha256"]})


class Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 drops the SYNs of 8 parallel connects, and the
    # client's SYN retry costs a second.
    request_queue_size = 128

    def handle_error(self, request, client_address):
        # A client that stops reading (an aborted or cut transfer) is part of the tests.
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", required=True)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--lifetime", type=float, default=300)
    a = ap.parse_args()
    with open(a.spec) as fh:
        spec = json.load(fh)
    srv = Server(("127.0.0.1", 0), Handler)
    srv.state = State(load_repos(spec), spec.get("token", ""))
    tmp = a.port_file + ".tmp"
    with open(tmp, "w") as fh:
        fh.write("%d\n" % srv.server_address[1])
    os.replace(tmp, a.port_file)
    parent = os.getppid()
    deadline = time.time() + a.lifetime

    def watchdog():
        while time.time() < deadline and os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watchdog, daemon=True).start()
    srv.serve_forever(poll_interval=0.2)


if __name__ == "__main__":
    sys.exit(main())
