"""The OpenAI-compatible recording proxy (docs/proxy.md).

`relay` forwards a request to the upstream and relays its answer (asking for logprobs the
client did not, and stripping them again); `record` turns relayed answers into trace
records for the ingest pipeline (`entropy_sentinel.wire` reads and edits request and answer
bodies, for the SDK too); `slice_spec` reads a request's slice; `metrics` counts what the proxy did.
"""

__all__: list[str] = []
