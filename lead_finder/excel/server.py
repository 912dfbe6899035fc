"""``lead-finder excel serve``: the Office.js add-in's backend, on xlwings Server.

xlwings Server (PyPI ``xlwings-server``, the optional extra ``excel-server``) is source-available
under the PolyForm Noncommercial License 1.0.0, or a paid xlwings licence for commercial use.
It refuses to start without ``XLWINGS_LICENSE_KEY``: set it to ``noncommercial`` only if your use
is non-commercial, otherwise to your licence key. lead_finder does not choose for you.

The app is xlwings Server's own, with `lead_finder.excel.officejs` as its ``custom_functions``
module. Its project folder (``.env`` for xlwings settings, static overrides) is
``<user data dir>/lead_finder/xlwings-server`` unless ``XLWINGS_PROJECT_DIR`` says otherwise, so
that no ``config.py`` or ``.env`` in the current directory is picked up by accident.
"""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path
from typing import Any

import click
import platformdirs

from ..errors import ConfigurationError

__all__ = ["create_app", "excel", "run"]

_LICENCE = (
    "xlwings Server needs a licence: set XLWINGS_LICENSE_KEY=noncommercial if your use is "
    "non-commercial (PolyForm Noncommercial License 1.0.0), or to a paid xlwings licence key"
)
_INSTALL = "the Office.js functions need xlwings Server: pip install 'lead-finder[excel-server]'"


def project_dir() -> Path:
    """xlwings Server's project folder for lead_finder (created if missing)."""
    path = Path(os.environ.get("XLWINGS_PROJECT_DIR")
                or Path(platformdirs.user_data_dir("lead_finder")) / "xlwings-server")
    path.mkdir(parents=True, exist_ok=True)
    return path


def create_app() -> Any:
    """The xlwings Server ASGI app serving FINDEMAIL, EMAILSTATUS, PERSONALEMAIL and FINDEMAILS.

    Raises ConfigurationError when xlwings Server is missing or no licence key is set. xlwings
    Server reads its settings when first imported, so one process serves one app.
    """
    if not os.environ.get("XLWINGS_LICENSE_KEY"):
        raise ConfigurationError(_LICENCE)
    # xlwings Server reads these when it is first imported.
    os.environ["XLWINGS_PROJECT_DIR"] = str(project_dir())
    os.environ.setdefault("XLWINGS_FUNCTIONS_NAMESPACE", "LEADFINDER")
    os.environ.setdefault("XLWINGS_PROJECT_NAME", "Lead Finder")
    try:
        _register_officejs_engine()
        from . import officejs

        # xlwings Server imports the top-level modules `custom_functions` and `custom_scripts`
        # (from its project folder, else its own examples): ours are these.
        sys.modules["custom_functions"] = officejs
        sys.modules.setdefault("custom_scripts", types.ModuleType("custom_scripts"))
        from xlwings_server import main
    except ImportError as exc:
        raise ConfigurationError(_INSTALL) from exc
    return main.main_app


def _register_officejs_engine() -> None:
    """xlwings registers its Office.js conversion engine only when it is first imported with a
    licence key set; register it now if xlwings was imported earlier in this process."""
    import xlwings
    from xlwings.main import Engine

    names = {engine.name for engine in xlwings.engines}
    if "officejs" not in names:
        from xlwings.pro import _xlofficejs

        xlwings.engines.add(Engine(impl=_xlofficejs.engine))


def run(
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    certfile: str | os.PathLike[str] | None = None,
    keyfile: str | os.PathLike[str] | None = None,
) -> None:
    """Serve the add-in with uvicorn until interrupted (HTTPS when a certificate is given)."""
    import uvicorn

    app = create_app()
    uvicorn.run(
        app,
        host=host,
        port=port,
        ssl_certfile=os.fspath(certfile) if certfile else None,
        ssl_keyfile=os.fspath(keyfile) if keyfile else None,
        log_level="info",
    )


@click.group()
def excel() -> None:
    """Excel: the Office.js add-in server (Excel on Mac and on the web)."""


@excel.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--certfile", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="TLS certificate (Office.js add-ins must be served over HTTPS).")
@click.option("--keyfile", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="TLS private key for --certfile.")
@click.pass_context
def serve(ctx: click.Context, host: str, port: int, certfile: Path | None,
          keyfile: Path | None) -> None:
    """Serve =FINDEMAIL and friends as Office.js custom functions (xlwings Server).

    Needs `pip install 'lead-finder[excel-server]'` and XLWINGS_LICENSE_KEY (xlwings Server is
    PolyForm Noncommercial, or a paid licence). The API key comes from SIXTYFOUR_API_KEY, the
    keyring or the config file, as for every other command; it never reaches the workbook.
    The add-in manifest is at /manifest.xml.
    """
    from ..finder import LeadFinder
    from .session import EXCEL_QUIET, ExcelSession, set_default_session

    if (certfile is None) != (keyfile is None):
        raise click.UsageError("give both --certfile and --keyfile, or neither")
    opts = ctx.find_root().obj or {}
    base_url, cache = opts.get("base_url"), opts.get("cache")
    session = ExcelSession(
        lambda: LeadFinder(base_url=base_url, cache_path=cache, quiet=EXCEL_QUIET))
    set_default_session(session)
    session.warm_up(serving=True)
    if certfile is None:
        click.echo("Serving over plain HTTP: Excel only loads Office.js add-ins over HTTPS; "
                   "pass --certfile and --keyfile (for example from mkcert).", err=True)
    run(host, port, certfile=certfile, keyfile=keyfile)
