"""The `animatediff serve` command: its options, and the server's options made from them. Importing this
is light (no FastAPI, gradio or torch): the app's packages are imported when the command runs, and their
absence is one paragraph naming the extra to install."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from animatediff.arguments import command, whole_number
from animatediff.errors import ConfigError

APP_PACKAGES = ("fastapi", "uvicorn", "gradio")  # the `app` extra


def add_serve_parser(commands) -> None:
    """`animatediff serve` and its options (the app's packages are imported only when it runs)."""
    serve = command(commands, "serve", "the web app and HTTP API (127.0.0.1:7860)")
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (another than loopback: say who may connect with --auth or --token-file)",
    )
    serve.add_argument("--port", type=whole_number, default=7860, help="port to listen on")
    serve.add_argument(
        "--models",
        help="a folder, or a Hub repository (OWNER/REPO[@REV]), whose checkpoints the page lists (the embedded models "
        "are always listed; its embeddings/ are words of every prompt)",
    )
    serve.add_argument("--outputs", type=Path, default=Path("outputs"), help="where outputs and job records go")
    serve.add_argument("--auth", metavar="USER:PASSWORD", help="ask for this user (page and API: HTTP Basic)")
    serve.add_argument("--token-file", type=Path, help="API clients may send this file's token as a Bearer token")
    serve.add_argument(
        "--device",
        action="append",
        default=[],
        help="a device with a worker of its own, repeatable (default: CUDA, else an Apple GPU, else the CPU)",
    )
    serve.add_argument("--queue", type=whole_number, default=8, help="jobs that may wait; more answer 429")
    for name, what in (
        ("frames", "frames"),
        ("size", "width or height"),
        ("steps", "steps"),
        ("prompt-length", "prompt characters"),
    ):
        serve.add_argument(
            f"--max-{name}",
            type=whole_number,
            help=f"the most {what} a request may ask for (default: what fits the device)",
        )
    serve.set_defaults(run=run_serve)


def _check_app_packages() -> None:
    """`serve` needs the `app` extra; without it, say how to install it instead of failing on an import."""
    import importlib.util

    missing = [name for name in APP_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(
            f"animatediff serve needs the web app's packages, and {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not installed; install the app extra: "
            "pip install 'animatediff[app]' (from a clone: pip install -e '.[app]')."
        )


def _models_folder(given: str) -> Path:
    """`serve --models`: a folder, or a Hub repository of models (OWNER/REPO[@REV], fetched into the cache)."""
    from animatediff import hub

    reference = None if Path(given).is_dir() else hub.parse(given)
    if reference is not None and reference.path is None:
        return hub.fetch(reference)
    if not Path(given).is_dir():
        raise ConfigError(f"--models {given}: no such folder, nor a Hub repository (OWNER/REPO).")
    return Path(given)


def serve_options(args: argparse.Namespace):
    """The server's options from `serve`'s flags."""
    _check_app_packages()
    from animatediff.app.requests import Limits
    from animatediff.app.server import ServerOptions
    from animatediff.planner import device_and_dtype

    devices = tuple(args.device) or (device_and_dtype(None, None)[0],)  # CUDA, then an Apple GPU, then the CPU
    limits = Limits.for_device(devices[0])
    given = {
        "frames": args.max_frames,
        "size": args.max_size,
        "steps": args.max_steps,
        "prompt_length": args.max_prompt_length,
    }
    limits = replace(limits, **{name: value for name, value in given.items() if value is not None})
    auth = None
    if args.auth is not None:
        user, colon, password = args.auth.partition(":")
        if not colon or not user or not password:
            raise ConfigError(f"--auth expects USER:PASSWORD; got {args.auth!r}.")
        auth = (user, password)
    token = None
    if args.token_file is not None:
        try:
            token = args.token_file.read_text().strip()
        except OSError as error:
            raise ConfigError(f"--token-file {args.token_file}: cannot be read ({error.strerror}).") from error
        if len(token) < 16:
            raise ConfigError(f"--token-file {args.token_file}: the token must be at least 16 characters.")
    args.outputs.mkdir(parents=True, exist_ok=True)
    return ServerOptions(
        outputs=args.outputs,
        models=None if args.models is None else _models_folder(args.models),
        limits=limits,
        devices=devices,
        capacity=args.queue,
        auth=auth,
        token=token,
    )


def run_serve(args: argparse.Namespace) -> int:
    import ipaddress

    options = serve_options(args)
    try:
        loopback = ipaddress.ip_address(args.host).is_loopback
    except ValueError:
        loopback = args.host == "localhost"
    if not loopback and options.auth is None and options.token is None:
        print(
            f"animatediff serve: warning: listening on {args.host} without authentication: anyone who can reach "
            "this address can generate and read outputs; give --auth USER:PASSWORD or --token-file.",
            file=sys.stderr,
        )
    import uvicorn

    from animatediff.app.server import create_app

    print(f"animatediff serve: http://{args.host}:{args.port}/ (API: /api, schema: /docs)")
    uvicorn.run(create_app(options), host=args.host, port=args.port, log_level="warning")
    return 0
