"""``python main.py serve``: a live page to draw a digit on and watch every layer respond."""

from core.commands.command import Command
from core.commands.options import add_device, add_params, port_number


def add_arguments(parser):
    add_params(parser, "the model file, a 1x28x28 digit classifier (default: best_params.npz)")
    parser.add_argument(
        "--port", type=port_number, default=8000, help="TCP port (default: 8000; 0: any free one)"
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1, this machine only)",
    )
    add_device(parser)


def run(args):
    from core.serve.live import LivePage
    from core.serve.server import LiveServer
    from data.errors import UserError

    live = LivePage(args.params)
    try:
        server = LiveServer((args.host, args.port), live)
    except OSError as err:  # port taken, unknown host, no permission
        raise UserError(
            f"cannot listen on {args.host}:{args.port} ({err.strerror or err}); "
            "choose another --port or --host"
        ) from err
    print(f"serving {args.params} at {server.url}  (Ctrl-C stops)", flush=True)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"note: anyone who can reach {args.host} can use the page", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", flush=True)
    finally:
        server.server_close()


COMMAND = Command(
    "serve",
    "a live page: draw a digit and watch every layer respond (Ctrl-C stops it)",
    add_arguments,
    run,
    description="Serve a web page (http://127.0.0.1:8000 by default) to draw a digit on: it "
    "shows the prepared 28x28 picture, the top classes and every layer's feature maps as "
    "you draw. The page loads nothing from the internet. Ctrl-C stops the server.",
)
