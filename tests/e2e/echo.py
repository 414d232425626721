#!/usr/bin/env python3
"""Upstream application for the end-to-end tests.

Answers every method on every path with 200 and a JSON body describing the request it saw:
``{"method": ..., "path": ..., "headers": {lowercased name: value}, "body": ...}``.
Repeated header lines are joined with ", " so a test can tell they were repeated.

Except GET under ``/app``: a small HTML page of "the application" for the browser tests, greeting
the user named by the identity headers (``x-auth-request-preferred-username``, else
``x-auth-request-user``), showing the path it was asked for, with a sign-out link.

Usage: echo.py PORT   (binds 127.0.0.1; prints "READY <port>" once listening)
"""

import html
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class EchoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "e2e-echo"

    def _app_page(self):
        h = self.headers
        name = h.get("x-auth-request-preferred-username") or h.get("x-auth-request-user") or "stranger"
        page = (
            '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Demo app</title></head>'
            '<body><main><h1 id="greeting">Hello, {name}</h1><p>You asked for <code id="path">{path}</code></p>'
            '<p id="groups">{groups}</p><a id="sign-out" href="/oauth2/sign_out">Sign out</a></main></body></html>'
        ).format(
            name=html.escape(name),
            path=html.escape(self.path),
            groups=html.escape(h.get("x-auth-request-groups") or ""),
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "text/html; charset=utf-8")
        self.send_header("content-length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    def _answer(self):
        if self.command == "GET" and (self.path == "/app" or self.path.startswith(("/app/", "/app?"))):
            return self._app_page()
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        payload = json.dumps(
            {
                "method": self.command,
                "path": self.path,
                "headers": headers,
                "body": body.decode("utf-8", "replace"),
            },
            sort_keys=True,
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _answer

    def __getattr__(self, name):
        # Any other method token (PURGE, ...) is answered the same way.
        if name.startswith("do_"):
            return self._answer
        raise AttributeError(name)

    def log_message(self, fmt, *args):
        sys.stdout.write("%s %s\n" % (self.log_date_time_string(), fmt % args))
        sys.stdout.flush()


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: echo.py PORT")
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), EchoHandler)
    server.daemon_threads = True
    print(f"READY {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
