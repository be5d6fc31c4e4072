"""nginx (official image, default site): every GET/HEAD gets the welcome page; other methods get 405.

Headers as nginx sends them (``Server: nginx/1.27.0``, Last-Modified, ETag, Accept-Ranges), error pages in
nginx's HTML, one access-log line per request on stdout in the image's ``main`` format. ``--port`` (default
80); nginx's own ``-g``/``-c``/``-p``/``-e`` options are accepted and ignored, ``-v``/``-t`` print and exit.
"""

from __future__ import annotations

import sys
import time

from membrane.lab.workloads import httpcore, runtime
from membrane.lab.workloads.httpcore import Request, Response

VERSION = "1.27.0"
SERVER = f"nginx/{VERSION}"
WELCOME = b"""<!DOCTYPE html>
<html>
<head>
<title>Welcome to nginx!</title>
<style>
html { color-scheme: light dark; }
body { width: 35em; margin: 0 auto;
font-family: Tahoma, Verdana, Arial, sans-serif; }
</style>
</head>
<body>
<h1>Welcome to nginx!</h1>
<p>If you see this page, the nginx web server is successfully installed and
working. Further configuration is required.</p>

<p>For online documentation and support please refer to
<a href="http://nginx.org/">nginx.org</a>.<br/>
Commercial support is available at
<a href="http://nginx.com/">nginx.com</a>.</p>

<p><em>Thank you for using nginx.</em></p>
</body>
</html>
"""
_MTIME = 1716306000  # the page's Last-Modified: the image build time, fixed so ETags are stable
_ETAG = f'"{_MTIME:x}-{len(WELCOME):x}"'


def error_page(status: int) -> Response:
    title = f"{status} {httpcore.REASONS.get(status, '')}".strip()
    if status == 405:
        title = "405 Not Allowed"
    body = (f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n"
            f"<hr><center>{SERVER}</center>\r\n</body>\r\n</html>\r\n").encode()
    return Response(status, body, [("Content-Type", "text/html")])


def handle(req: Request) -> Response:
    if req.method not in ("GET", "HEAD"):
        return error_page(405)
    headers = [
        ("Content-Type", "text/html"),
        ("Last-Modified", httpcore.http_date(_MTIME)),
        ("ETag", _ETAG),
        ("Accept-Ranges", "bytes"),
    ]
    if req.header("If-None-Match") == _ETAG:
        return Response(304, b"", headers[1:3])
    return Response(200, WELCOME, headers)


def access_log(req: Request, status: int, sent: int) -> None:
    stamp = time.strftime("%d/%b/%Y:%H:%M:%S %z")
    referer = req.header("Referer") or "-"
    agent = req.header("User-Agent") or "-"
    forwarded = req.header("X-Forwarded-For") or "-"
    line = f'{req.client[0]} - - [{stamp}] "{req.method} {req.target} {req.version}" {status} {sent} "{referer}" "{agent}" "{forwarded}"\n'
    sys.stdout.write(line)
    sys.stdout.flush()


def parse_args(argv: list[str]) -> int:
    """The listen port; handles nginx's informational options by printing and exiting."""
    port = 80
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg.startswith("--port"):
            value = arg.partition("=")[2] if "=" in arg else (args.pop(0) if args else "")
            if not value.isdigit():
                print(f"nginx: invalid --port {value!r}", file=sys.stderr)
                sys.exit(2)
            port = int(value)
        elif arg in ("-g", "-c", "-p", "-e"):
            if args:
                args.pop(0)
        elif arg in ("-v", "-V"):
            print(f"nginx version: {SERVER}", file=sys.stderr)
            sys.exit(0)
        elif arg in ("-t", "-T"):
            print("nginx: the configuration file /etc/nginx/nginx.conf syntax is ok", file=sys.stderr)
            print("nginx: configuration file /etc/nginx/nginx.conf test is successful", file=sys.stderr)
            sys.exit(0)
        elif arg in ("-q",):
            continue
        else:
            print(f'nginx: invalid option: "{arg}"', file=sys.stderr)
            sys.exit(1)
    return port


def main(argv: list[str]) -> None:
    port = parse_args(argv)
    try:
        listener = httpcore.open_tcp_listener(port)
    except OSError as exc:
        runtime.fatal(f"nginx: [emerg] bind() to 0.0.0.0:{port} failed ({exc.errno}: {exc.strerror})")
    runtime.log(f"nginx {VERSION} listening on port {port}")
    runtime.run_until_terminated(
        [lambda: httpcore.serve(listener, handle, server=SERVER, access_log=access_log, error_page=error_page)]
    )


if __name__ == "__main__":
    main(sys.argv[1:])
