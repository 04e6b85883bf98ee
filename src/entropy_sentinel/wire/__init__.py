"""The OpenAI wire format, as the recording proxy and the SDK both read and change it.

`openai_body` asks a request for logprobs and strips them from the answer again (in its
bytes); `sse` cuts an event stream into whole events; `answer` reads what a trace record
needs from an answer's bytes (its id, its text, a legacy stream as one completion).
Nothing here imports the service: the SDK (`entropy_sentinel.client`) runs without it.
"""

__all__: list[str] = []
