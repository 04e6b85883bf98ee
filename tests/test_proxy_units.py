"""The proxy's pure parts: SSE framing, logprobs stripping, request preparation, slices,
trace records. Properties with Hypothesis, and the recorded real SmolLM2 answers."""

from __future__ import annotations

import itertools
import json
from typing import Any
from urllib.parse import quote

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from entropy_sentinel.errors import ConfigError
from entropy_sentinel.service.proxy.record import Exchange, build_record
from entropy_sentinel.service.proxy.relay import forwarded_headers, returned_headers
from entropy_sentinel.service.proxy.slice_spec import parse_slice
from entropy_sentinel.traces import decode_record
from entropy_sentinel.wire.openai_body import UnstrippableError, prepare_request, strip_logprobs
from entropy_sentinel.wire.sse import SSEFramer, event_data
from tests.conftest import SMOLLM2_FIXTURES


def _recorded(name: str) -> list[Any]:
    data: list[Any] = json.loads((SMOLLM2_FIXTURES / f"{name}.json").read_text())
    return data


# ------------------------------------------------------------------ SSE framing
_line_end = st.sampled_from(["\n", "\r\n", "\r"])
_field = st.sampled_from(["data: ", "data:", "event: ", "id: ", ": "])
_value = st.text(
    alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=["Cs"]), max_size=30
)
_event = st.lists(st.tuples(_field, _value, _line_end), min_size=1, max_size=4).flatmap(
    # the empty line after a line ending in CR cannot start with LF (that is one CRLF)
    lambda lines: (st.sampled_from(["\r", "\r\n"]) if lines[-1][2] == "\r" else _line_end).map(
        lambda end: "".join(f + v + e for f, v, e in lines) + end
    )
)


@settings(max_examples=300)
@given(events=st.lists(_event, max_size=8), cuts=st.lists(st.integers(0, 400), max_size=12))
def test_framer_returns_each_event_exactly_whatever_the_chunking(
    events: list[str], cuts: list[int]
) -> None:
    stream = "".join(events).encode()
    bounds = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    framer = SSEFramer()
    got: list[bytes] = []
    for a, b in itertools.pairwise(bounds):
        got += framer.feed(stream[a:b])
    got_tail = framer.tail()
    # events ending in a lone CR are only known to be complete once more bytes arrive
    if events and events[-1].endswith("\r") and not events[-1].endswith("\r\n"):
        assert got == [e.encode() for e in events[:-1]]
        assert got_tail == events[-1].encode()
    else:
        assert got == [e.encode() for e in events]
        assert got_tail == b""


def test_framer_on_the_recorded_stream() -> None:
    raw = (SMOLLM2_FIXTURES / "chat_stream.sse").read_bytes()
    events = SSEFramer().feed(raw)
    assert b"".join(events) == raw
    datas = [event_data(e) for e in events]
    assert datas[-1] == b"[DONE]"
    chunks = [json.loads(d) for d in datas[:-1] if d is not None]
    assert chunks == _recorded("chat_stream")[0]


def test_event_data_joins_lines_and_ignores_other_fields() -> None:
    assert event_data(b"event: x\r\ndata: a\r\ndata:  b\r\nid: 1\r\n\r\n") == b"a\n b"
    assert event_data(b"data\n\n") is None  # a field named 'data' without colon is not data
    assert event_data(b"data:\n\n") == b""


# --------------------------------------------------------------- logprobs strip
def _without_logprobs(obj: dict[str, Any]) -> dict[str, Any]:
    return dict(obj, choices=[dict(c, logprobs=None) for c in obj["choices"]])


_FORMATS: list[dict[str, Any]] = [
    {"separators": (",", ":")},  # FastAPI / llama-cpp-python JSONResponse
    {},  # json.dumps defaults (sse-starlette events of llama-cpp-python)
    {"indent": 2},  # OpenAI's pretty-printed answers
]


@pytest.mark.parametrize("fmt", _FORMATS)
@pytest.mark.parametrize("name", ["chat", "completions"])
def test_strip_is_byte_exact_on_recorded_answers(name: str, fmt: dict[str, Any]) -> None:
    for answer in _recorded(name):
        original = json.dumps(answer, ensure_ascii=False, **fmt).encode()
        expected = json.dumps(_without_logprobs(answer), ensure_ascii=False, **fmt).encode()
        assert strip_logprobs(original) == expected


def test_strip_rewrites_stream_events_and_passes_others_unchanged() -> None:
    raw = (SMOLLM2_FIXTURES / "chat_stream.sse").read_bytes()
    for event in SSEFramer().feed(raw):
        data = event_data(event)
        assert data is not None
        if data == b"[DONE]":
            assert strip_logprobs(event) is event
            continue
        chunk = json.loads(data)
        expected = b"data: " + json.dumps(_without_logprobs(chunk)).encode() + b"\n\n"
        assert strip_logprobs(event) == expected
    for other in (b": ping\n\n", b'{"error": {"message": "logprobs"}}', b"not json"):
        assert strip_logprobs(other) is other


_tricky = st.text(
    alphabet=st.sampled_from(['"', "\\", "l", "o", "g", "p", "r", "b", "s", ":", "{", "é", " "]),
    max_size=30,
)


@settings(max_examples=200)
@given(
    contents=st.lists(_tricky, min_size=1, max_size=3),
    keys=st.lists(_tricky, max_size=3),
    fmt=st.sampled_from(_FORMATS),
    ascii_only=st.booleans(),
)
def test_strip_never_touches_strings_that_look_like_the_key(
    contents: list[str], keys: list[str], fmt: dict[str, Any], ascii_only: bool
) -> None:
    answer = {
        "id": "x",
        **{k: '"logprobs": ' + k for k in keys},
        "choices": [
            {
                "index": i,
                "message": {"content": f'"logprobs": {{{c}}}', "role": "assistant"},
                "logprobs": {"content": [{"token": c, "logprob": -0.5, "top_logprobs": []}]},
            }
            for i, c in enumerate(contents)
        ],
    }
    original = json.dumps(answer, ensure_ascii=ascii_only, **fmt).encode()
    expected = json.dumps(_without_logprobs(answer), ensure_ascii=ascii_only, **fmt).encode()
    assert strip_logprobs(original) == expected


def test_strip_falls_back_for_multi_line_data() -> None:
    answer = {"choices": [{"index": 0, "logprobs": {"content": []}}]}
    text = json.dumps(answer, indent=1)
    event = ("".join(f"data: {line}\n" for line in text.splitlines()) + "\n").encode()
    out = strip_logprobs(event)
    data = event_data(out)
    assert data is not None and json.loads(data) == _without_logprobs(answer)


# ----------------------------------------------------------- request preparation
def _prepared(body: dict[str, Any], kind: str = "chat") -> tuple[dict[str, Any], Any]:
    p = prepare_request(json.dumps(body).encode(), kind, 20)  # type: ignore[arg-type]
    return json.loads(p.body), p


def test_requests_get_logprobs_only_when_the_client_did_not_ask() -> None:
    sent, p = _prepared({"model": "m", "messages": [], "logprobs": False})
    assert (sent["logprobs"], sent["top_logprobs"], p.strip, p.record) == (True, 20, True, True)
    raw = b'{"model":"m", "messages":[], "logprobs":true, "top_logprobs":3}'
    p = prepare_request(raw, "chat", 20)
    assert p.body is raw and not p.strip and p.record and p.client_logprobs
    sent, p = _prepared({"prompt": "x", "model": "m"}, "completions")
    assert sent["logprobs"] == 20 and p.strip
    raw = b'{"prompt": "x", "logprobs": 0}'
    p = prepare_request(raw, "completions", 20)
    assert p.body is raw and p.client_logprobs and p.record


def test_requests_the_proxy_leaves_to_the_upstream() -> None:
    for raw, kind, reason in (
        (b"not json", "chat", "request"),
        (b"[1, 2]", "chat", "request"),
        (b'{"messages": [], "top_logprobs": 5}', "chat", "top_logprobs without logprobs"),
        (b'{"prompt": "x", "echo": true}', "completions", "echo"),
    ):
        p = prepare_request(raw, kind, 20)  # type: ignore[arg-type]
        assert p.body is raw and not p.strip and not p.record and p.skip_reason == reason


def test_the_slice_in_metadata_is_removed_and_other_metadata_kept() -> None:
    sent, p = _prepared({"messages": [], "metadata": {"sentinel_slice": "domain=bio"}})
    assert "metadata" not in sent and p.slice_text == "domain=bio"
    sent, p = _prepared(
        {"messages": [], "store": True, "metadata": {"sentinel_slice": "a=b", "team": "x"}}
    )
    assert sent["metadata"] == {"team": "x"} and sent["store"] is True
    # fields and their order are the client's, with the proxy's additions at the end
    assert list(sent) == ["messages", "store", "metadata", "logprobs", "top_logprobs"]


# ------------------------------------------------------------------------ slices
_name = st.text(min_size=1, max_size=20).filter(lambda s: s.strip() == s and s != "*")
_slice = st.dictionaries(
    _name.filter(lambda s: "\x00" not in s), _value.filter(lambda s: "\x00" not in s), max_size=5
)


@given(slice_=_slice)
def test_slice_text_round_trips_with_percent_escapes(slice_: dict[str, str]) -> None:
    text = ", ".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in slice_.items())
    assert parse_slice(text) == slice_


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("domain", "is not name=value"),
        ("=chemistry", "is not name=value"),
        ("a=1,a=2", "given twice"),
        ("*=x", "reserved"),
        ("d=" + "x" * 300, "at most 256"),
        (",".join(f"d{i}=x" for i in range(33)), "more than 32"),
    ],
)
def test_bad_slices_are_clear_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_slice(text)


# ------------------------------------------------------------------------ headers
def test_headers_forwarded_and_returned() -> None:
    raw = [
        (b"authorization", b"Bearer sk-secret"),
        (b"openai-organization", b"org-1"),
        (b"host", b"proxy:8000"),
        (b"connection", b"keep-alive, x-hop"),
        (b"x-hop", b"1"),
        (b"content-length", b"12"),
        (b"accept-encoding", b"gzip"),
        (b"x-sentinel-slice", b"domain=bio"),
        (b"x-sentinel-key", b"key"),
        (b"x-custom", b"kept"),
    ]
    assert forwarded_headers(raw) == [
        (b"authorization", b"Bearer sk-secret"),
        (b"openai-organization", b"org-1"),
        (b"x-custom", b"kept"),
        (b"accept-encoding", b"identity"),
    ]
    back = [
        (b"Content-Type", b"application/json"),
        (b"Content-Length", b"10"),
        (b"Transfer-Encoding", b"chunked"),
        (b"Date", b"x"),
        (b"x-request-id", b"req_1"),
        (b"set-cookie", b"a=1"),
        (b"set-cookie", b"b=2"),
    ]
    assert returned_headers(back) == [
        (b"content-type", b"application/json"),
        (b"x-request-id", b"req_1"),
        (b"set-cookie", b"a=1"),
        (b"set-cookie", b"b=2"),
    ]


# ------------------------------------------------------------------------ records
def _arrays(record: bytes | Any) -> list[tuple[Any, ...]]:
    return [
        (t.sampled_logprob, t.sampled_in_topk, t.topk_logprobs) for t in decode_record(record, 0)
    ]


def _same(a: list[tuple[Any, ...]], b: list[tuple[Any, ...]]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        for u, v in zip(x, y):
            np.testing.assert_array_equal(u, v)


def _exchange(**kw: Any) -> Exchange:
    base: dict[str, Any] = {
        "kind": "chat",
        "received_at": 1_700_000_000.0,
        "slice": {"domain": "bio"},
        "meta": {"route": "chat/completions", "stream": False},
        "prompt": [{"role": "user", "content": "What is 17 + 25?"}],
        "model": "smollm2",
        "k": 20,
    }
    return Exchange(**{**base, **kw})


def test_records_of_recorded_answers_decode_like_the_answers() -> None:
    for answer in _recorded("chat"):
        body = json.dumps(answer).encode()
        record = build_record(_exchange(body=body, id="px-1"), record_text=True)
        traces = decode_record(record, 0)
        assert [t.id for t in traces] == ["px-1"]  # our own id; the upstream's is in meta
        assert traces[0].meta["proxy"]["upstream_id"] == answer["id"]
        assert traces[0].slice == {"domain": "bio"}
        assert traces[0].answer == answer["choices"][0]["message"]["content"]
        assert traces[0].prompt == [{"role": "user", "content": "What is 17 + 25?"}]
        assert (traces[0].model, traces[0].k) == ("smollm2", 20)
        assert traces[0].meta["proxy"]["route"] == "chat/completions"
        assert json.loads(record)["timestamp"] == 1_700_000_000.0
        _same(_arrays(record), _arrays(answer))
    for chunks in _recorded("chat_stream"):
        datas = tuple(json.dumps(c).encode() for c in chunks)
        record = build_record(_exchange(chunks=datas), record_text=True)
        trace = decode_record(record, 0)[0]
        assert trace.id.startswith("px-")
        assert trace.meta["proxy"]["upstream_id"] == chunks[0]["id"]
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
        assert trace.answer == text
        _same(_arrays(record), _arrays(chunks))
    record = build_record(_exchange(body=json.dumps(_recorded("chat")[0]).encode()))
    trace = decode_record(record, 0)[0]
    assert (trace.prompt, trace.answer) == (None, None)  # no text unless asked
    assert set(trace.meta) == {"proxy"}


def test_answers_whose_upstream_id_repeats_get_ids_of_their_own() -> None:
    body = json.dumps(_recorded("chat")[0]).encode()
    ids = {decode_record(build_record(_exchange(body=body)), 0)[0].id for _ in range(3)}
    assert len(ids) == 3


def test_a_legacy_prompt_that_is_not_text_stays_in_meta() -> None:
    answer = _recorded("completions")[0]
    ex = _exchange(kind="completions", body=json.dumps(answer).encode(), prompt=[1, 2, 3])
    trace = decode_record(build_record(ex, record_text=True), 0)[0]
    assert trace.prompt is None and trace.meta["prompt"] == [1, 2, 3]


def test_strip_fails_closed_on_answers_it_cannot_read() -> None:
    nan = b'{"choices": [{"index": 0, "logprobs": {"content": [{"token": "a", "logprob": NaN}]}}]}'
    with pytest.raises(UnstrippableError, match="not valid JSON"):
        strip_logprobs(nan)
    with pytest.raises(UnstrippableError):
        strip_logprobs(b"data: " + nan + b"\n\n")
    # the key written with an escape is still found (by decoding), and removed
    escaped = b'{"choices": [{"index": 0, "\\u006cogprobs": {"content": []}}]}'
    assert json.loads(strip_logprobs(escaped)) == {"choices": [{"index": 0, "logprobs": None}]}


@pytest.mark.parametrize(
    ("kind", "body", "k"),
    [
        ("chat", {"messages": []}, 20),
        ("chat", {"messages": [], "logprobs": True, "top_logprobs": 5}, 5),
        ("chat", {"messages": [], "logprobs": True}, 0),
        ("completions", {"prompt": "x", "logprobs": 3}, 3),
        ("completions", {"prompt": "x"}, 20),
    ],
)
def test_the_requested_k_is_known(kind: str, body: dict[str, Any], k: int) -> None:
    assert prepare_request(json.dumps(body).encode(), kind, 20).k == k  # type: ignore[arg-type]


def test_a_streamed_legacy_completion_is_reassembled() -> None:
    for answer in _recorded("completions"):
        lp = answer["choices"][0]["logprobs"]
        n = len(lp["tokens"])
        if n == 0:
            continue
        chunks = []
        for j in range(0, n, 3):  # three tokens per chunk, as a server might send them
            part = {k: lp[k][j : j + 3] for k in ("tokens", "token_logprobs", "top_logprobs")}
            choice = {"index": 0, "text": "".join(part["tokens"]), "logprobs": part}
            chunks.append({"id": answer["id"], "object": "text_completion", "choices": [choice]})
        datas = tuple(msgspec.json.encode(c) for c in chunks)
        record = build_record(_exchange(kind="completions", chunks=datas), record_text=True)
        traces = decode_record(record, 0)
        assert traces[0].meta["proxy"]["upstream_id"] == answer["id"]
        assert traces[0].answer == "".join(lp["tokens"])
        _same(_arrays(record), _arrays(answer))
