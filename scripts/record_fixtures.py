"""Record real llama.cpp-server responses of SmolLM2-135M-Instruct as test fixtures.

    .venv/bin/python scripts/record_fixtures.py [--out tests/fixtures/smollm2]

Starts the local model server (`entropy_sentinel.collect.model_server.LocalModelServer`),
asks a few short arithmetic questions written for this purpose (no benchmark
text is stored) in three shapes, and writes:

* ``chat.json``: non-streamed ``/v1/chat/completions`` responses (logprobs, top 20);
* ``chat_stream.json``: the ``chat.completion.chunk`` objects of streamed responses,
  one list per response, and ``chat_stream.sse``: the raw SSE bytes of the first;
* ``completions.json``: legacy ``/v1/completions`` responses (``logprobs=20``);
* ``traces.jsonl``: the same responses as canonical trace records, with slices
  and correctness labels from a last-number check, for the CLI and demo;
* ``RECORDING.md``: model file checksum, server, parameters and date.

Run once; the fixtures are committed. Rerunning gives new responses (the
timestamps and ids change) but the same shapes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import urllib.request
from pathlib import Path
from typing import Any

from entropy_sentinel.collect.model_server import LocalModelServer, sha256

QUESTIONS: list[tuple[str, str, str]] = [
    ("add", "What is 17 + 25? Answer with the number.", "42"),
    ("add", "Compute 8 + 9 and give just the result.", "17"),
    ("mul", "What is 12 times 11? Reply with the number only.", "132"),
    ("mul", "Calculate 7 * 8. Give the final answer.", "56"),
    ("word", "Tom has 5 apples and buys 3 more. How many apples does he have now?", "8"),
    ("word", "A box holds 6 pens. How many pens are in 4 boxes?", "24"),
]
PARAMS: dict[str, Any] = {"temperature": 0.5, "max_tokens": 64, "seed": 7}


def _post(url: str, body: dict[str, Any]) -> bytes:
    req = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=300) as resp:
        data: bytes = resp.read()
        return data


def _last_number(text: str) -> str | None:
    nums = re.findall(r"-?\d+(?:\.\d+)?", text.replace(",", ""))
    return nums[-1] if nums else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("tests/fixtures/smollm2"))
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    with LocalModelServer() as server:
        base, model = server.base_url, server.alias
        chat, streams, completions, records = [], [], [], []
        raw_sse = b""
        for i, (domain, question, gold) in enumerate(QUESTIONS):
            messages = [{"role": "user", "content": question}]
            body = {
                "model": model,
                "messages": messages,
                "logprobs": True,
                "top_logprobs": 20,
                **PARAMS,
            }
            resp = json.loads(_post(f"{base}/chat/completions", body))
            chat.append(resp)
            text = resp["choices"][0]["message"]["content"]
            records.append(
                {
                    "id": f"fixture-chat-{i}",
                    "slice": {"domain": domain, "shape": "chat"},
                    "correct": _last_number(text) == gold,
                    "logprobs": resp["choices"][0]["logprobs"],
                    "meta": {"grader": "last-number", "gold": gold},
                }
            )
            sse = _post(f"{base}/chat/completions", {**body, "stream": True})
            raw_sse = raw_sse or sse
            chunks = [
                json.loads(line[len(b"data: ") :])
                for line in sse.splitlines()
                if line.startswith(b"data: ") and line != b"data: [DONE]"
            ]
            streams.append(chunks)
            records.append(
                {
                    "id": f"fixture-stream-{i}",
                    "slice": {"domain": domain, "shape": "chat_stream"},
                    "logprobs": chunks,
                }
            )
            comp = json.loads(
                _post(
                    f"{base}/completions",
                    {
                        "model": model,
                        "prompt": f"Question: {question}\nAnswer:",
                        "logprobs": 20,
                        **PARAMS,
                    },
                )
            )
            completions.append(comp)
            records.append(
                {
                    "id": f"fixture-completion-{i}",
                    "slice": {"domain": domain, "shape": "completion"},
                    "correct": _last_number(comp["choices"][0]["text"]) == gold,
                    "logprobs": comp,
                    "meta": {"grader": "last-number", "gold": gold},
                }
            )
        (out / "chat.json").write_text(json.dumps(chat, indent=1))
        (out / "chat_stream.json").write_text(json.dumps(streams, indent=1))
        (out / "chat_stream.sse").write_bytes(raw_sse)
        (out / "completions.json").write_text(json.dumps(completions, indent=1))
        with (out / "traces.jsonl").open("w") as fh:
            for rec in records:
                fh.write(json.dumps(rec) + "\n")
        (out / "RECORDING.md").write_text(
            "# Recorded SmolLM2-135M-Instruct responses\n\n"
            f"Recorded {dt.date.today().isoformat()} by `scripts/record_fixtures.py` from "
            "`python -m entropy_sentinel.collect.llama_launch` (llama-cpp-python's server).\n\n"
            f"* model file: `{server.model_path.name}`, sha256 `{sha256(server.model_path)}`\n"
            f"* parameters: {json.dumps(PARAMS)}, top_logprobs 20 (chat), logprobs 20 "
            "(completions)\n"
            f"* {len(QUESTIONS)} hand-written arithmetic questions, each asked as chat, "
            "streamed chat and legacy completion\n"
            "* `correct` in traces.jsonl: last number in the answer equals the gold number\n"
        )
    print(f"wrote fixtures to {out}")


if __name__ == "__main__":
    main()
