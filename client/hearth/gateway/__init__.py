"""The OpenAI-compatible HTTP API (`hearth serve`): each request becomes a paid market job.

    params.py   an OpenAI request body -> what to ask the market (400 for what cannot be asked)
    broker.py   post, follow, expire and repost, fetch and verify: in worker threads of its own
    shapes.py   the OpenAI response, chunk, model and error objects
    app.py      the FastAPI app: routes, the API key, errors in OpenAI's shape

Nothing here is imported by `hearth --help`: the CLI imports this package only inside `serve`.
"""
