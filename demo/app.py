"""The demo's application upstream (cluster `app`, and again as `api`).

It trusts nothing but what the mesh hands it: the session ID and subject arrive as
request headers set by session-guard, never from a cookie or a URL. The page shows
exactly what this upstream received, so you can watch the filter at work:
the mesh cookie never appears in Cookie, session parameters never appear in the path.

Run: python demo/app.py [PORT] [NAME]   (stdlib only; PORT defaults to 8080)
"""

import html
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 8080
NAME = sys.argv[2] if len(sys.argv) > 2 else "app"

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>session-guard demo</title>
<style>body{{font-family:sans-serif;max-width:46em;margin:2em auto}}
td{{padding:.2em .8em;border-bottom:1px solid #ddd}}code{{background:#f4f4f4}}</style></head>
<body>
<h1>session-guard demo: <code>{name}</code> upstream</h1>
<p id="status">You are <strong id="subject">{subject}</strong>.</p>
<h2>What this upstream received</h2>
<table>
<tr><td>x-session-id</td><td><code id="session-id">{session_id}</code></td></tr>
<tr><td>x-session-subject</td><td><code id="session-subject">{subject_header}</code></td></tr>
<tr><td>Cookie header</td><td><code id="cookie">{cookie}</code></td></tr>
<tr><td>path</td><td><code id="path">{path}</code></td></tr>
</table>
<p>The mesh cookie (<code>__Host-session</code>) is never in the Cookie header above:
upstreams get the session through <code>x-session-id</code> only.</p>
<h2>Try</h2>
<ul>
<li><a id="login" href="/auth/login">Log in</a> (the session ID changes: rotation)</li>
<li><a id="logout" href="/auth/logout">Log out</a></li>
<li><a id="elevate" href="/auth/elevate">Elevate privilege</a> (rotates again)</li>
<li><a id="fixation" href="/?jsessionid=ATTACKER&amp;page=2">/?jsessionid=ATTACKER&amp;page=2</a>
  (a planted session in the URL: the path above shows it stripped, <code>page=2</code> kept)</li>
<li><a href="/whoami">/whoami</a> (the same as JSON)</li>
</ul>
<p>This page also sets an app cookie <code>theme=dark; Path=/</code>; look at the
response headers: the mesh added <code>Secure</code> and <code>SameSite</code> to it.</p>
</body></html>
"""


class Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 keeps Envoy's upstream connections alive; every reply sets Content-Length.
    protocol_version = "HTTP/1.1"

    def seen(self):
        # Only the mesh's headers count: session-guard removes client-sent copies first.
        return {
            "session_id": self.headers.get("x-session-id"),
            "subject": self.headers.get("x-session-subject"),
            "path": self.path,
            "cookie": self.headers.get("cookie"),
            "service": NAME,
        }

    def reply(self, status, ctype, body, extra=()):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        # The page shows per-user data: no shared cache may keep it.
        self.send_header("Cache-Control", "private, no-store")
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def do_GET(self):
        seen = self.seen()
        if self.path.split("?", 1)[0] in ("/whoami", "/api/whoami"):
            self.reply(200, "application/json", json.dumps(seen) + "\n")
            return
        if self.path.split("?", 1)[0] == "/favicon.ico":
            self.reply(404, "text/plain", "no icon\n")
            return
        if self.path.split("?", 1)[0] == "/assets/app.js":
            # The same for everyone: a shared cache may keep it, and the mesh commits no
            # session on it (docs/design.md, "When a session is committed").
            data = b"console.log('session-guard demo asset');\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/javascript")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "public, max-age=600")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            return
        page = PAGE.format(
            name=html.escape(NAME),
            subject=html.escape(seen["subject"] or "anonymous"),
            subject_header=html.escape(seen["subject"] or "(none)"),
            session_id=html.escape(seen["session_id"] or "(none)"),
            cookie=html.escape(seen["cookie"] or "(none)"),
            path=html.escape(seen["path"]),
        )
        # A plain app cookie, deliberately without Secure/SameSite: the mesh hardens it.
        self.reply(200, "text/html; charset=utf-8", page, [("Set-Cookie", "theme=dark; Path=/")])

    do_HEAD = do_GET

    def do_POST(self):
        # Drain the body so the kept-alive connection stays in sync, then answer like GET.
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.do_GET()

    def log_message(self, fmt, *args):
        sys.stderr.write(f"[{NAME}] " + (fmt % args) + "\n")


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    # The bound port, not argv's: with port 0 the OS picks one and a test reads it here.
    print(f"[{NAME}] listening on 127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
