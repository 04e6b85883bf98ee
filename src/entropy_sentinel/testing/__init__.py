"""Test scaffolding that ships with the package, as ``fastapi.testclient`` does: a
`sentinel serve` process for integration tests (`service`), an upstream that replays
recorded answers (`replay_upstream`) and graded demo traffic sent through the proxy
(`traffic`). Not used by the product itself."""

__all__: list[str] = []
