"""The `hearth` command line. Every command has --help; reporting commands take --json; the
exit code is 0 only on success; user mistakes print one clear line (and a hint), no traceback.

One module per command group. Other packages add groups through the `hearth.cli` entry point
(the provider node adds `hearth node` and `hearth bench node`), so this package never imports them."""

from __future__ import annotations

import logging
import os
import sys
from importlib.metadata import entry_points
from pathlib import Path

import click

from hearth.cli import account, bench, devnet, ipfs, job, model, provider, serve
from hearth.cli.common import Ctx, fail
from hearth.errors import HearthError
from hearth.settings import DEFAULT_IPFS_API

_verbose = False  # -v was given


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--network", envvar="HEARTH_NETWORK", default="devnet", show_default=True,
              help="deployment to use (deployments/<network>.json)")
@click.option("--rpc-url", envvar="HEARTH_RPC_URL", help="HTTP RPC endpoint (default: the running devnet)")
@click.option("--ipfs-api", envvar="HEARTH_IPFS_API", default=DEFAULT_IPFS_API, show_default=True,
              help="Kubo RPC API URL (or the embedded daemon's)")
@click.option("--keystore", envvar="HEARTH_KEYSTORE", type=click.Path(path_type=Path),
              help="encrypted keystore file; password from HEARTH_PASSWORD or a prompt")
@click.option("--account", "account_index", type=click.IntRange(0, 9),
              help="devnet only: dev account index (default 2 for clients)")
@click.option("--pin-service", metavar="URL", help="IPFS Pinning Service API endpoint to pin job specs on (token: "
              "HEARTH_PIN_SERVICE_TOKEN) and read results back from [env HEARTH_PIN_SERVICE_URL]")
@click.option("--pin-gateway", metavar="URL", help="gateway serving what the pinning service holds (default: the "
              "service's URL) [env HEARTH_PIN_GATEWAY]")
@click.option("--pin-kubo-api", metavar="URL", help="a second Kubo RPC API to copy specs to and read results back "
              "from [env HEARTH_PIN_KUBO_API]")
@click.option("-v", "--verbose", is_flag=True, help="log more, and show the traceback of an unexpected error (as "
              "HEARTH_DEBUG=1 does)")
@click.version_option(package_name="hearth")
@click.pass_context
def cli(ctx: click.Context, network: str, rpc_url: str | None, ipfs_api: str, keystore: Path | None,
        account_index: int | None, pin_service: str | None, pin_gateway: str | None, pin_kubo_api: str | None,
        verbose: bool) -> None:
    """Hearth: a decentralized market for AI inference."""
    global _verbose
    _verbose = verbose  # main() then shows the traceback of an unexpected error
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    ctx.obj = Ctx(network, rpc_url, ipfs_api, keystore, account_index,
                  pin_flags={"service_url": pin_service, "gateway": pin_gateway, "kubo_api": pin_kubo_api})



for _group in (devnet.devnet_group, devnet.deploy_cmd, devnet.compile_cmd, ipfs.ipfs_group, account.account_group,
               model.model_group, job.job_group, provider.provider_group, bench.bench_group, serve.serve_cmd):
    cli.add_command(_group)


def _register_plugins() -> None:
    for ep in entry_points(group="hearth.cli"):
        ep.load()(cli)


def _notes(e: BaseException) -> str:
    """What was added to an error on its way up (such as tokens left in the deposit), as a suffix."""
    return "".join(f"; {n}" for n in getattr(e, "__notes__", ()))


def main() -> None:
    """Entry point: run the CLI, turning Hearth errors into one-line messages, and any other
    error into one line that says it is a bug (the traceback with -v or HEARTH_DEBUG=1)."""
    _register_plugins()
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort as e:
        fail("aborted" + _notes(e), code=130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except HearthError as e:
        fail(str(e).split("\n  hint:")[0] + _notes(e), e.hint)
    except KeyboardInterrupt as e:
        fail("interrupted" + _notes(e), code=130)
    except Exception as e:
        if _verbose or os.environ.get("HEARTH_DEBUG") == "1":
            raise
        first = (str(e).strip().splitlines() or [""])[0]
        fail(f"{type(e).__name__}{': ' + first if first else ''}{_notes(e)}",
             "this is a bug in hearth; run with -v (hearth -v ...) or HEARTH_DEBUG=1 for the traceback")

