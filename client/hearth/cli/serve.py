"""`hearth serve`: the OpenAI-compatible HTTP API, each request a paid job from this account."""

from __future__ import annotations

import click

from hearth.cli.common import Ctx, pass_ctx
from hearth.formats.units import TOKEN, parse_amount, parse_duration


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on (localhost by default)")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--api-key", help="Bearer key clients must send (default: HEARTH_API_KEY; unset: any key is accepted)")
@click.option("--payment", default="0.01", show_default=True, help="HRT paid per request (one job each)")
@click.option("--claim-timeout", default="1m", show_default=True,
              help="time for a provider to claim a job before it is expired and posted again")
@click.option("--timeout", "completion", default="5m", show_default=True, help="time for the claimer to complete")
@click.option("--attempts", default=2, show_default=True, type=click.IntRange(1, 10),
              help="jobs to post per request when nobody claims (the rest are failover reposts)")
@click.option("--max-tokens", "default_max_tokens", default=256, show_default=True, type=click.IntRange(1, 32768),
              help="max_tokens of requests that set none")
@pass_ctx
def serve_cmd(c: Ctx, host: str, port: int, api_key: str | None, payment: str, claim_timeout: str, completion: str,
              attempts: int, default_max_tokens: int) -> None:
    """Serve an OpenAI-compatible API (/v1/models, /v1/chat/completions, /v1/completions).

    Point any OpenAI client at http://HOST:PORT/v1. Each request is posted as a market job paid
    from this account's deposit, and answered only once the result is verified against the chain.
    Models are the names in `hearth model list`."""
    import logging

    import uvicorn

    from hearth import models, settings
    from hearth.gateway.app import create_app
    from hearth.gateway.broker import Broker, Connections, Terms

    terms = Terms(parse_amount(payment), parse_duration(claim_timeout), parse_duration(completion), attempts)
    # connect now, in this thread: a wrong RPC URL or keystore fails here with its hint, and the
    # worker threads then share connections that are already built
    conn = Connections(c.network, c.market, c.sender, c.account, c.ipfs)
    names = [m.name for m in models.all_models()]  # also computes the bundled model's CID once
    key = api_key or settings.api_key()
    broker = Broker(conn, terms)
    logging.getLogger("hearth.gateway").setLevel(logging.INFO)  # each job posted, answered or refunded
    click.echo(f"hearth serve: http://{host}:{port}/v1 as {conn.account.address}, {terms.payment / TOKEN:g} HRT "
               f"per request; models: {', '.join(names) or 'none'}; "
               f"{'API key required' if key else 'any API key accepted'}", err=True)
    uvicorn.run(create_app(broker, key, default_max_tokens), host=host, port=port, log_level="warning")
