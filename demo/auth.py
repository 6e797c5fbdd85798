"""The demo's auth upstream (cluster `auth`, routes /auth/).

It never touches the session cookie. It checks a password, then *tells* the mesh
what happened with a response header (`x-session-guard: login`), and session-guard
rotates the session: the ID the browser had before login never becomes authenticated.
Because the mesh forwards the ID it will commit (`x-session-id-next`), this service
can bind server-side state to the new session *before* it answers.

Run: python demo/auth.py [PORT]   (stdlib only; PORT defaults to 8081)
"""

import html
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 8081

# Server-side state keyed by the session ID the mesh is about to commit. A real app would
# migrate a pre-login cart etc. here; the old ID is simply never given the user.
BINDINGS: dict[str, str] = {}
LOCK = threading.Lock()

# Usernames become a response header (the subject): keep them to a safe, printable set.
USERNAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")

FORM = """<!doctype html>
<html><head><meta charset="utf-8"><title>Log in</title>
<style>body{{font-family:sans-serif;max-width:46em;margin:2em auto}}</style></head><body>
<h1>Log in</h1>
<p id="error" style="color:#b00">{error}</p>
<form method="post" action="/auth/login">
<label>Username <input id="username" name="username" placeholder="alice" autofocus></label><br>
<label>Password <input id="password" name="password" type="password" placeholder="demo"></label><br>
<button id="submit" type="submit">Log in</button>
</form>
<p>Any non-empty password works (try <code>demo</code>). This is the auth upstream:
it received <code>x-session-id: {sid}</code> and
<code>x-session-id-next: {next_id}</code>; a login here commits the second one.</p>
<p><a href="/">back</a></p></body></html>
"""


def short(session_id):
    # Enough to tell sessions apart in the log without printing a full bearer value.
    return session_id[:8] + "..." if session_id else "(none)"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, status, body="", headers=()):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")  # login pages are never cached
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def form(self, status, error=""):
        self.reply(status, FORM.format(
            error=html.escape(error),
            sid=html.escape(self.headers.get("x-session-id") or "(none)"),
            next_id=html.escape(self.headers.get("x-session-id-next") or "(none)")))

    def signal(self, kind, subject=None):
        # 303 turns the POST into a GET of "/", where the app shows the new session.
        headers = [("Location", "/"), ("x-session-guard", kind)]
        if subject:
            headers.append(("x-session-guard-subject", subject))
        self.reply(303, "", headers)

    def bind_next(self, user, why):
        next_id = self.headers.get("x-session-id-next")
        if not next_id:
            self.log_message("WARNING no x-session-id-next: is session-guard in front of me?")
            return
        with LOCK:
            BINDINGS[next_id] = user
        self.log_message("%s %s: bound to next session %s; the current one, %s, never gets it",
                         why, user, short(next_id), short(self.headers.get("x-session-id")))

    def route(self, body):
        path = urlsplit(self.path).path
        if path == "/auth/login" and self.command == "POST":
            fields = parse_qs(body.decode("utf-8", "replace"))
            user = fields.get("username", [""])[0].strip()
            password = fields.get("password", [""])[0]
            if not USERNAME.fullmatch(user) or not password:
                self.form(401, "Wrong username or password (username: letters, digits, ._@-).")
                return
            self.bind_next(user, "login")
            self.signal("login", user)
        elif path == "/auth/login":
            self.form(200)
        elif path == "/auth/logout":
            # GET too, so the demo page can link to it; a real app would accept POST only.
            with LOCK:
                BINDINGS.pop(self.headers.get("x-session-id") or "", None)
            self.log_message("logout %s", short(self.headers.get("x-session-id")))
            self.signal("logout")
        elif path == "/auth/elevate":
            user = self.headers.get("x-session-subject")
            if not user:
                self.form(403, "Log in first: only an authenticated session can be elevated.")
                return
            self.bind_next(user, "privilege")
            self.signal("privilege")
        else:
            self.reply(404, "<p>not found</p>")

    def do_GET(self):
        self.route(b"")

    do_HEAD = do_GET

    def do_POST(self):
        length = int(self.headers.get("content-length") or 0)
        if length > 64 * 1024:  # a login form is tiny; refuse rather than buffer
            self.close_connection = True
            self.reply(413, "<p>too large</p>")
            return
        self.route(self.rfile.read(length))

    def log_message(self, fmt, *args):
        sys.stderr.write("[auth] " + (fmt % args) + "\n")


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    # The bound port, not argv's: with port 0 the OS picks one and a test reads it here.
    print(f"[auth] listening on 127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
