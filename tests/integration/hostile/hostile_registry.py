#!/usr/bin/env python3
"""A misbehaving OCI distribution registry for zsnap's hostile-registry tests (stdlib only).

    hostile_registry.py --layout OCI_DIR --tag TAG --port-file FILE --log FILE [--secret S]

Serves the image oci:OCI_DIR:TAG (an OCI image layout, e.g. from lib/image.sh image_build_oci)
on two listeners on 127.0.0.1 with kernel-chosen ports, written to --port-file as
"A_PORT B_PORT". Host A is the registry; host B is "another host" (a blob store a redirect
points at). Every request either host receives is appended to --log as one JSON line
{"host": "A"|"B", "method", "path", "headers": {...}} before it is answered, so a test can
check which credentials reached which host.

The misbehaviour is chosen by the first component of the repository name:
/v2/<scenario>/img/{manifests,blobs}/... Scenarios (see SCENARIOS below):
  ok                  a correct registry
  err-code-int        404 {"errors":[{"code":1}]} for everything but /v2/
  err-message-null    404 {"errors":[{"code":"NOT_FOUND","message":null}]}
  err-nonobject       404 with a JSON array / string body
  mediatype-null      the manifest has "mediaType": null (containerd accepts it)
  huge-manifest       a manifest of Content-Length 1 GiB, streamed
  endless-blob        blob bodies that never end (no Content-Length, connection kept)
  chunk-ext           chunked blob whose chunk-size line has an extension and never a CRLF
  endless-trailers    chunked blob with a last chunk and then trailer lines forever
  slowloris           blob bytes one every 2 s
  redirect-loop       blob GET redirects to itself forever
  redirect-chain      blob GET redirects through 40 hops before the real blob
  relative-query      blob GET redirects to a relative URL whose query holds "://"
  presigned           blob GET redirects to B with X-Amz-Signature / X-Amz-Security-Token
  layers-20k          a manifest (and config) with 20,000 layers
  token-crlf          Bearer auth; the token contains CRLF + an injected header
  token-expiry        Bearer auth; expires_in = 1e30
  token-types         Bearer auth; token endpoint answers {"token": 5, "expires_in": "x"}
  cross-host          A wants Basic credentials (the --secret user:password); blobs redirect
                      to B, which answers 401 with a Bearer realm on B
Thread-safety: one thread per connection (ThreadingHTTPServer); the log is written under a lock.
"""
import argparse
import base64
import hashlib
import json
import os
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MANIFEST_TYPES = "application/vnd.oci.image.manifest.v1+json"
LOG_LOCK = threading.Lock()
STATE = {}


def load_image(layout, tag):
    with open(os.path.join(layout, "index.json")) as f:
        index = json.load(f)
    desc = next(m for m in index["manifests"]
                if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag)
    blobs = {}
    bdir = os.path.join(layout, "blobs", "sha256")
    for name in os.listdir(bdir):
        blobs["sha256:" + name] = os.path.join(bdir, name)
    with open(blobs[desc["digest"]], "rb") as f:
        manifest = f.read()
    return manifest, blobs


def digest_of(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def variant_manifest(scenario):
    """The manifest bytes served for SCENARIO (and extra blobs it needs)."""
    base = json.loads(STATE["manifest"])
    extra = {}
    if scenario == "mediatype-null":
        base["mediaType"] = None
    elif scenario == "layers-20k":
        layers, diff_ids = [], []
        for i in range(20000):
            d = "sha256:" + hashlib.sha256(b"layer%d" % i).hexdigest()
            layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                           "digest": d, "size": 32})
            diff_ids.append("sha256:" + hashlib.sha256(b"diff%d" % i).hexdigest())
        config = json.dumps({"architecture": "amd64", "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
        extra[digest_of(config)] = config
        base["config"] = {"mediaType": "application/vnd.oci.image.config.v1+json",
                          "digest": digest_of(config), "size": len(config)}
        base["layers"] = layers
    else:
        return STATE["manifest"], extra
    data = json.dumps(base).encode()
    return data, extra


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "hostile"

    def log_message(self, *args):  # quiet stderr; requests go to the JSON log
        pass

    def record(self, body=b""):
        # A POST body (containerd's OAuth token form carries the password) is never logged,
        # only whether it holds the secret.
        entry = {"host": self.server.name, "method": self.command, "path": self.path,
                 "headers": {k: v for k, v in self.headers.items()}, "t": time.time(),
                 "body_has_secret": STATE["secret"].split(":", 1)[-1].encode() in body}
        with LOG_LOCK, open(STATE["log"], "a") as f:
            f.write(json.dumps(entry) + "\n")

    def send(self, code, body=b"", ctype="application/json", headers=()):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Docker-Distribution-API-Version", "registry/2.0")
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def other(self, port_index):
        return "http://127.0.0.1:%d" % STATE["ports"][port_index]

    def do_HEAD(self):
        self.do_GET()

    def do_POST(self):
        # OAuth token requests (containerd remotes/docker/auth/fetch.go FetchTokenWithOAuth,
        # used when the caller has credentials): a form body, answered with an access_token.
        length = min(int(self.headers.get("Content-Length") or 0), 65536)
        body = self.rfile.read(length) if length > 0 else b""
        self.record(body)
        path, _, query = self.path.partition("?")
        try:
            if path != "/token":
                return self.send(404)
            if self.server.name == "B":
                return self.send(200, b'{"access_token":"b-token","token":"b-token"}')
            return self.token(body.decode("latin-1"))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def do_GET(self):
        self.record()
        try:
            self.route()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def route(self):
        path, _, query = self.path.partition("?")
        if self.server.name == "B":
            return self.route_b(path, query)
        if path in ("/v2", "/v2/"):
            return self.send(200, b"{}")
        if path == "/token":
            return self.token(query)
        parts = path.split("/")
        # /v2/<scenario>/<repo...>/(manifests|blobs)/<ref>
        if len(parts) < 6 or parts[1] != "v2" or parts[-2] not in ("manifests", "blobs"):
            return self.send(404, b'{"errors":[{"code":"NAME_UNKNOWN","message":"no"}]}')
        scenario, kind, ref = parts[2], parts[-2], parts[-1]
        if scenario.startswith("token-") and not self.bearer_ok():
            return self.send(401, b'{"errors":[{"code":"UNAUTHORIZED","message":"token"}]}',
                             headers=[("WWW-Authenticate", 'Bearer realm="%s/token",'
                                       'service="hostile",scope="repository:%s:pull"'
                                       % (self.other(0), scenario))])
        if scenario == "cross-host" and not self.basic_ok():
            return self.send(401, b'{"errors":[{"code":"UNAUTHORIZED","message":"basic"}]}',
                             headers=[("WWW-Authenticate", 'Basic realm="hostile"')])
        if scenario == "err-code-int":
            return self.send(404, b'{"errors":[{"code":1}]}')
        if scenario == "err-message-null":
            return self.send(404, b'{"errors":[{"code":"NOT_FOUND","message":null}]}')
        if scenario == "err-nonobject":
            return self.send(404, b'["errors"]' if kind == "manifests" else b'"no"')
        if kind == "manifests":
            return self.manifest(scenario, ref)
        return self.blob(scenario, ref, path, query)

    def bearer_ok(self):
        return self.headers.get("Authorization", "").startswith("Bearer ")

    def basic_ok(self):
        want = "Basic " + base64.b64encode(STATE["secret"].encode()).decode()
        return self.headers.get("Authorization", "") == want

    def token(self, query):
        scope = query
        if "token-crlf" in scope:
            body = {"token": "abc\r\nX-Injected: yes", "expires_in": 300}
        elif "token-expiry" in scope:
            body = {"token": "tok", "expires_in": 2 ** 63 - 1}  # a Go int; overflows naive clocks
        elif "token-types" in scope:
            body = {"token": 5, "expires_in": "x", "issued_at": []}
        else:
            body = {"token": "tok"}
        return self.send(200, json.dumps(body).encode())

    def manifest(self, scenario, ref):
        data, extra = variant_manifest(scenario)
        STATE["extra"].update(extra)
        if scenario == "huge-manifest":
            size = 1 << 30
            self.send_response(200)
            self.send_header("Content-Type", MANIFEST_TYPES)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            if self.command == "HEAD":
                return
            chunk = b" " * 65536
            for _ in range(size // len(chunk)):
                self.wfile.write(chunk)
            return
        return self.send(200, data, MANIFEST_TYPES, headers=[("Docker-Content-Digest", digest_of(data))])

    def blob_bytes(self, ref):
        if ref in STATE["extra"]:
            return STATE["extra"][ref]
        path = STATE["blobs"].get(ref)
        if path is None:
            return None
        with open(path, "rb") as f:
            return f.read()

    def blob(self, scenario, ref, path, query):
        data = self.blob_bytes(ref)
        if data is None:
            return self.send(404, b'{"errors":[{"code":"BLOB_UNKNOWN","message":"unknown"}]}')
        config = data.startswith(b"{")  # configs are JSON; layers are compressed or tar
        if config or self.command == "HEAD" or scenario in ("ok", "mediatype-null", "layers-20k") \
                or scenario.startswith("token-"):
            return self.send(200, data, "application/octet-stream")
        if scenario == "endless-blob":
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"%x\r\n" % 65536 + os.urandom(65536) + b"\r\n"
            while True:
                self.wfile.write(chunk)
        if scenario == "chunk-ext":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"10;ext=")
            filler = b"a" * 65536
            while True:
                self.wfile.write(filler)
        if scenario == "endless-trailers":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Trailer", "X-Junk")
            self.end_headers()
            self.wfile.write(b"%x\r\n" % len(data) + data + b"\r\n0\r\n")
            line = b"X-Junk: " + b"j" * 1000 + b"\r\n"
            while True:
                self.wfile.write(line)
        if scenario == "slowloris":
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            for i in range(len(data)):
                self.wfile.write(data[i:i + 1])
                self.wfile.flush()
                time.sleep(2)
            return
        if scenario == "redirect-loop":
            return self.send(307, headers=[("Location", path)])
        if scenario == "redirect-chain":
            hop = int(query.partition("hop=")[2] or 0) if "hop=" in query else 0
            if hop < 40:
                return self.send(307, headers=[("Location", "%s?hop=%d" % (path, hop + 1))])
            return self.send(200, data, "application/octet-stream")
        if scenario == "relative-query":
            if "next=" in query:
                return self.send(200, data, "application/octet-stream")
            return self.send(307, headers=[("Location", path + "?next=http://evil.invalid/x")])
        if scenario == "presigned":
            return self.send(307, headers=[("Location", "%s/store/%s?X-Amz-Signature=%s&"
                                             "X-Amz-Security-Token=%s" % (
                                                 self.other(1), ref, STATE["sig"], STATE["sig"]))])
        if scenario == "cross-host":
            return self.send(307, headers=[("Location", "%s/store/%s" % (self.other(1), ref))])
        return self.send(500, b'{"errors":[{"code":"UNKNOWN","message":"unknown scenario"}]}')

    def route_b(self, path, query):
        if path == "/token":
            return self.send(200, b'{"token":"b-token"}')
        if not path.startswith("/store/"):
            return self.send(404)
        ref = path[len("/store/"):]
        if "X-Amz-Signature" not in query and not self.bearer_ok():
            return self.send(401, headers=[("WWW-Authenticate", 'Bearer realm="%s/token",'
                                            'service="b"' % self.other(1))])
        data = self.blob_bytes(ref)
        if data is None:
            return self.send(404)
        return self.send(200, data, "application/octet-stream")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--layout", required=True)
    ap.add_argument("--tag", required=True)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--secret", default="hostile-user:hostile-secret-7f3a")
    ap.add_argument("--sig", default="PRESIGNED-SIG-9c2e")
    args = ap.parse_args()
    STATE["manifest"], STATE["blobs"] = load_image(args.layout, args.tag)
    STATE.update(log=args.log, secret=args.secret, sig=args.sig, extra={})
    servers = []
    for name in ("A", "B"):
        s = Server(("127.0.0.1", 0), Handler)
        s.name = name
        servers.append(s)
    STATE["ports"] = [s.server_address[1] for s in servers]
    for s in servers[1:]:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d %d\n" % tuple(STATE["ports"]))
    os.rename(tmp, args.port_file)
    servers[0].serve_forever()


if __name__ == "__main__":
    sys.exit(main())
