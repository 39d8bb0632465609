"""``npcai serve MODEL_DIR``: the clinician's web tool for one patient at a time."""
from __future__ import annotations

import ipaddress
import logging
import os
import re
from pathlib import Path

import typer

from npcai.errors import NpcaiError

__all__ = ["register", "serve"]

TOKEN_ENV = "NPCAI_SERVE_TOKEN"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _RedactToken(logging.Filter):
    """Keep ``?token=...`` (the browser's one-time login link) out of the access log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(re.sub(r"token=[^&\s]*", "token=[redacted]", a) if isinstance(a, str) else a
                                for a in record.args)
        return True


def serve(
    model_dir: Path = typer.Argument(..., help="What to serve. A run folder (npcai train): a classifier; the page "
                                               "shows its risk, the patient's place among the training patients, "
                                               "Grad-CAM with localisation shares and a model card. A study folder "
                                               "(npcai study run): its run with the best validation AUC, served "
                                               "the same way."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on; anything but localhost needs a "
                                                         "token."),
    port: int = typer.Option(8000, "--port", help="Port to listen on."),
    token: bool = typer.Option(False, "--token", help=f"Require a bearer token; read from ${TOKEN_ENV}, or a new "
                                                      "random one is printed."),
    max_upload_mb: float = typer.Option(500.0, "--max-upload-mb", help="Largest request body, enforced while it "
                                                                       "streams in."),
    workers: int = typer.Option(1, "--workers", help="Patients analysed at the same time (each uses the CPU "
                                                     "threads divided among the workers)."),
    queue: int = typer.Option(8, "--queue", help="Requests allowed to wait for a worker; more get 503."),
) -> None:
    """Serve a trained model in the browser: one patient's MRI and contour in, risk and Grad-CAM out.

    Research use only, not a medical device. Open http://HOST:PORT/ (API docs at /docs).
    """
    import secrets

    import torch
    import uvicorn

    from npcai.serve.app import create_app
    from npcai.serve.upload import UploadLimits

    secret = os.environ.get(TOKEN_ENV) or None
    if token and secret is None:
        secret = secrets.token_urlsafe(24)
        typer.echo(f"token: {secret}  (send 'Authorization: Bearer TOKEN', or open http://{host}:{port}/?token=TOKEN)")
    if not _loopback(host) and secret is None:
        raise NpcaiError(f"--host {host} exposes the tool beyond this machine; add --token (or set {TOKEN_ENV})")
    if max_upload_mb <= 0:
        raise NpcaiError(f"--max-upload-mb {max_upload_mb}: must be positive")
    app = create_app(model_dir, token=secret, limits=UploadLimits(max_bytes=int(max_upload_mb * 1024 ** 2)),
                     workers=workers, queue=queue)
    typer.echo(f"npcai serve: {app.state.served.card.name} ({app.state.served.card.kind}) on http://{host}:{port}/ "
               "— research use only, not a medical device")
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(workers, 1)))   # workers share the cores
    logging.getLogger("uvicorn.access").addFilter(_RedactToken())
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=True)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)

