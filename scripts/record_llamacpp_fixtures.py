"""Record real responses of llama.cpp's own C++ server (``llama-server``) as fixtures.

    .venv/bin/python scripts/record_llamacpp_fixtures.py --server PATH/TO/llama-server \
        [--out tests/fixtures/llamacpp]

``llama-server`` is not on PyPI; build it from the llama.cpp sources vendored in
the llama-cpp-python sdist we already depend on (about 15 minutes on 2 cores)::

    pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36 -d /tmp/lc
    cd /tmp/lc && tar xzf llama_cpp_python-0.3.36.tar.gz
    cd llama_cpp_python-0.3.36/vendor/llama.cpp
    cmake -B build -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
        -DCMAKE_BUILD_TYPE=Release && cmake --build build --target llama-server -j 2

The script serves SmolLM2-135M-Instruct with it and records, for a few
hand-written arithmetic questions (no benchmark text):

* ``completion_logprobs.json``: native ``/completion`` with ``n_probs=20``
  (``completion_probabilities`` with ``logprob``/``top_logprobs``);
* ``completion_post_sampling.json``: the same with ``post_sampling_probs=true``
  (``prob``/``top_probs``);
* ``chat.json``: its OpenAI-compatible ``/v1/chat/completions`` with top-20 logprobs;
* ``RECORDING.md``: server build, model checksum, parameters, date.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from entropy_sentinel.collect.model_server import find_smollm2_gguf, free_port, sha256

QUESTIONS = [
    "What is 17 + 25? Answer with the number.",
    "What is 12 times 11? Reply with the number only.",
    "A box holds 6 pens. How many pens are in 4 boxes?",
]


def _post(url: str, body: dict[str, Any]) -> Any:
    req = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=300) as resp:
        return json.loads(resp.read())


def _wait(url: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"llama-server did not become healthy at {url}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", type=Path, required=True, help="llama-server binary")
    parser.add_argument("--out", type=Path, default=Path("tests/fixtures/llamacpp"))
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    model = find_smollm2_gguf()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    version = subprocess.run(
        [str(args.server), "--version"], capture_output=True, text=True, check=False
    )
    proc = subprocess.Popen(
        [
            str(args.server),
            "-m",
            str(model),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "-c",
            "2048",
            "-np",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait(url)
        native, post, chat = [], [], []
        for i, question in enumerate(QUESTIONS):
            prompt = f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"
            base = {
                "prompt": prompt,
                "n_predict": 48,
                "temperature": 0.5,
                "seed": 11 + i,
                "n_probs": 20,
            }
            native.append(_post(f"{url}/completion", base))
            post.append(_post(f"{url}/completion", {**base, "post_sampling_probs": True}))
            chat.append(
                _post(
                    f"{url}/v1/chat/completions",
                    {
                        "messages": [{"role": "user", "content": question}],
                        "max_tokens": 48,
                        "temperature": 0.5,
                        "seed": 11 + i,
                        "logprobs": True,
                        "top_logprobs": 20,
                    },
                )
            )
    finally:
        proc.terminate()
        proc.wait(30)
    for name, data in (
        ("completion_logprobs.json", native),
        ("completion_post_sampling.json", post),
        ("chat.json", chat),
    ):
        (out / name).write_text(json.dumps(data, indent=1))
    build = (version.stdout + version.stderr).strip().splitlines()[-1]
    (out / "RECORDING.md").write_text(
        "# Recorded llama.cpp server (C++) responses of SmolLM2-135M-Instruct\n\n"
        f"Recorded {dt.date.today().isoformat()} by `scripts/record_llamacpp_fixtures.py`.\n\n"
        f"* server: `llama-server` built from the llama.cpp sources vendored in "
        f"llama-cpp-python 0.3.36 (`{build}`)\n"
        f"* model file: `{model.name}`, sha256 `{sha256(model)}`\n"
        "* `/completion`: n_predict 48, temperature 0.5, n_probs 20, seed 11+i; once with "
        "logprobs, once with post_sampling_probs\n"
        "* `/v1/chat/completions`: max_tokens 48, temperature 0.5, logprobs, top_logprobs 20\n"
        f"* {len(QUESTIONS)} hand-written arithmetic questions\n"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
