#!/usr/bin/env python3
"""A reverse proxy that breaks a share of the requests it forwards (stdlib only).

    fault_proxy.py --upstream HOST:PORT --port-file FILE --seed N [--fault-rate 0.4] [--log FILE]

Listens on 127.0.0.1 (kernel-chosen port, written to --port-file) and forwards GET/HEAD to the
plain-HTTP registry --upstream. Each request draws from a random generator seeded with --seed
(draws are serialised, so one seed gives one sequence of faults for one sequence of requests):
with probability --fault-rate it gets one fault, chosen uniformly among
  reset      the connection is closed (RST) before any reply
  5xx        503 with a registry error body (or 500, 502)
  stall      nothing is sent for --stall-s seconds (default 40), then the connection is closed
  truncate   the upstream reply with its real Content-Length, cut off halfway, then closed
  garbage    the upstream headers, then the body with its bytes flipped (a digest mismatch)
otherwise the upstream reply is relayed as is. /v2/ pings are never broken. With --log every
request is appended as one JSON line {"path", "fault"}.
"""
import argparse
import http.client
import json
import os
import random
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FAULTS = ("reset", "5xx", "stall", "truncate", "garbage")
STATE = {}
LOCK = threading.Lock()


def draw():
    with LOCK:
        r = STATE["rng"]
        if r.random() >= STATE["rate"]:
            return None, 0
        return r.choice(FAULTS), r.randrange(3)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_HEAD(self):
        self.forward()

    def do_GET(self):
        self.forward()

    def record(self, fault):
        if STATE["log"]:
            with LOCK, open(STATE["log"], "a") as f:
                f.write(json.dumps({"path": self.path, "fault": fault}) + "\n")

    def forward(self):
        fault, pick = (None, 0) if self.path.rstrip("/") == "/v2" else draw()
        self.record(fault)
        if fault == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            return
        if fault == "5xx":
            body = b'{"errors":[{"code":"UNAVAILABLE","message":"injected"}]}'
            self.send_response((503, 500, 502)[pick])
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            return
        if fault == "stall":
            time.sleep(STATE["stall"])
            self.close_connection = True
            return
        up = http.client.HTTPConnection(STATE["upstream"], timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        try:
            up.request(self.command, self.path, headers=headers)
            resp = up.getresponse()
            self.send_response(resp.status)
            length = None
            for k, v in resp.getheaders():
                if k.lower() in ("connection", "transfer-encoding", "keep-alive"):
                    continue
                if k.lower() == "content-length":
                    length = int(v)
                self.send_header(k, v)
            body = resp.read() if self.command != "HEAD" else b""
            if length is None and self.command != "HEAD":
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command == "HEAD":
                return
            if fault == "truncate" and len(body) > 1:
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            if fault == "garbage":
                body = bytes(b ^ 0x5A for b in body)
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError, socket.timeout, http.client.HTTPException):
            self.close_connection = True
        finally:
            up.close()


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--fault-rate", type=float, default=0.4)
    ap.add_argument("--stall-s", type=float, default=40.0)
    ap.add_argument("--log", default="")
    args = ap.parse_args()
    STATE.update(upstream=args.upstream, rng=random.Random(args.seed), rate=args.fault_rate,
                 stall=args.stall_s, log=args.log)
    server = Server(("127.0.0.1", 0), Handler)
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % server.server_address[1])
    os.rename(tmp, args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
