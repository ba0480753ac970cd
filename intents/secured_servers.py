"""Our launcher for the Rasa server and the rasa-sdk action server: loopback, a shared secret on every request.

Run from ``intents/`` with the Rasa environment's Python (``assistant/dialogue/rasa_cli.py`` builds the lines):

    python secured_servers.py actions --host 127.0.0.1 --port 5055 --token-file ../var/secrets/actions_token
    python secured_servers.py rasa --token-file ../var/secrets/rasa_token -- run --enable-api -i 127.0.0.1 ...

Secrets are read from files (mode 0600, written by the assistant), never taken from the command line, which
every local user can read in ``ps``.

- **actions**: rasa-sdk's own app (``rasa_sdk.endpoint.create_app``) with no CORS origin, bound to ``--host``
  (rasa-sdk's default is 0.0.0.0), and a request middleware: anything but ``GET /health`` needs the secret in
  the ``X-Action-Token`` header (what the Rasa server sends: ``action_endpoint.headers`` in endpoints.yml) or
  the ``token`` query parameter. Without it: 401 and no data. rasa-sdk's error handler, which echoes the
  request body, is replaced by one that does not.
- **rasa**: ``rasa run ...`` with ``--auth-token`` (Rasa's HTTP API checks ``?token=``) plus a middleware that
  also guards the channel webhooks (``/webhooks/rest/webhook``), which Rasa itself leaves open: anything but
  ``GET /`` needs ``?token=`` or ``Authorization: Bearer``.
"""

from __future__ import annotations

import argparse
import hmac
import logging
import sys
from pathlib import Path

ACTION_TOKEN_HEADER = "X-Action-Token"
# the project root: the actions import the table of what the bot says (assistant/phrases.py, pure data)
PROJECT_ROOT = Path(__file__).resolve().parent.parent
UNAUTHORIZED = {"error": "unauthorized"}


def read_token(path: str) -> str:
    token = Path(path).read_text().strip()
    if len(token) < 16:
        raise SystemExit(f"token file {path} holds no usable secret")
    return token


def presented(request, *, header: str | None) -> str:
    """The secret a request carries: the header, ``Authorization: Bearer``, or the ``token`` parameter."""
    if header and request.headers.get(header):
        return request.headers.get(header)
    auth = request.headers.get("Authorization") or ""
    if auth.startswith("Bearer "):
        return auth[len("Bearer ") :]
    return request.args.get("token") or ""


def token_middleware(token: str, *, open_paths: set[tuple[str, str]], header: str | None):
    from sanic import response

    expected = token.encode()

    async def require_token(request):
        if (request.method, request.path) in open_paths:
            return None
        if hmac.compare_digest(presented(request, header=header).encode(), expected):
            return None
        return response.json(UNAUTHORIZED, status=401)

    return require_token


def create_action_app(token: str, *, actions: str = "actions"):
    """rasa-sdk's app with the token check, no CORS origin and an error handler that echoes nothing."""
    from rasa_sdk.endpoint import create_app
    from sanic import response

    app = create_app(actions, cors_origins="", auto_reload=False)
    app.register_middleware(token_middleware(token, open_paths={("GET", "/health")}, header=ACTION_TOKEN_HEADER), "request")

    async def quiet_errors(request, exception):
        logging.getLogger("rasa_sdk").error("action server error on %s", request.path, exc_info=exception)
        status = getattr(exception, "status_code", 500)
        return response.json({"error": "action server error"}, status=status if 400 <= status < 600 else 500)

    app.error_handler.add(Exception, quiet_errors)
    return app


def run_actions(args: argparse.Namespace) -> None:
    if str(PROJECT_ROOT) not in sys.path:
        sys.path.append(str(PROJECT_ROOT))
    from rasa_sdk import utils
    from rasa_sdk.plugin import plugin_manager

    utils.configure_colored_logging("INFO")
    utils.update_sanic_log_level()
    app = create_action_app(read_token(args.token_file), actions=args.actions)
    plugin_manager().hook.attach_sanic_app_extensions(app=app)
    logging.getLogger("rasa_sdk").info(f"action server on http://{args.host}:{args.port} (token required)")
    app.run(args.host, args.port, workers=1, access_log=False)


def run_rasa(args: argparse.Namespace) -> None:
    import rasa.core.run

    token = read_token(args.token_file)
    original = rasa.core.run.configure_app

    def configure_app(*a, **kw):
        app = original(*a, **kw)
        app.register_middleware(token_middleware(token, open_paths={("GET", "/")}, header=None), "request")
        return app

    rasa.core.run.configure_app = configure_app
    rest = [a for a in args.rasa_args if a != "--"]
    if "--auth-token" in rest:
        raise SystemExit("pass the token with --token-file, not on the command line")
    from rasa.__main__ import main

    sys.argv = ["rasa", *rest, f"--auth-token={token}"]  # one argument: a token may start with "-"
    main()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="server", required=True)
    a = sub.add_parser("actions", help="the rasa-sdk action server")
    a.add_argument("--host", default="127.0.0.1")
    a.add_argument("--port", type=int, default=5055)
    a.add_argument("--token-file", required=True)
    a.add_argument("--actions", default="actions")
    r = sub.add_parser("rasa", help="the Rasa server (arguments after -- go to `rasa`)")
    r.add_argument("--token-file", required=True)
    r.add_argument("rasa_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.server == "actions":
        run_actions(args)
    else:
        run_rasa(args)


if __name__ == "__main__":
    main()
