"""Failure behaviour: unsafe checkpoints, threads, memory, interrupted writes, model state."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import inspector
from inspector.errors import ModelLoadError, ResourceError

TEXT = "The cat sat on the mat because it was tired."


def _copy_without(src: Path, dst: Path, skip: set[str]) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        if f.name not in skip:
            shutil.copy(f, dst / f.name)
    return dst


def test_pickle_checkpoint_needs_opt_in(tiny, tiny_dirs, tmp_path):
    folder = _copy_without(tiny_dirs["bert"], tmp_path / "pickled", {"model.safetensors"})
    torch.save(tiny["bert"].model.state_dict(), folder / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match=r"pickle.*allow_pickle=True"):
        inspector.load(str(folder))
    m = inspector.load(str(folder), allow_pickle=True)
    np.testing.assert_array_equal(m.inspect(TEXT).attention, tiny["bert"].inspect(TEXT).attention)


def test_config_without_weights(tiny_dirs, tmp_path):
    folder = _copy_without(tiny_dirs["bert"], tmp_path / "noweights", {"model.safetensors"})
    with pytest.raises(ModelLoadError, match="no weights"):
        inspector.load(str(folder))


def test_remote_code_never_runs_without_opt_in(tiny_dirs, tmp_path):
    folder = _copy_without(tiny_dirs["bert"], tmp_path / "remote", set())
    marker = tmp_path / "ran.txt"
    (folder / "custom_model.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\n"
        "from transformers import BertConfig\nclass CustomConfig(BertConfig):\n"
        "    model_type = 'custom-bert'\n"
    )
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "custom_model.CustomConfig"}
    (folder / "config.json").write_text(json.dumps(config))
    try:
        m = inspector.load(str(folder))
    except ModelLoadError as exc:
        assert "trust_remote_code" in str(exc) or "remote" in str(exc)
    else:  # transformers ignored the custom class: fine, as long as nothing ran
        assert m.bundle.model_type == "bert"
    assert not marker.exists()


def test_model_that_cannot_run_eager(tiny_dirs, monkeypatch):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    model = AutoModelForMaskedLM.from_pretrained(tiny_dirs["bert"], attn_implementation="sdpa")
    tok = AutoTokenizer.from_pretrained(tiny_dirs["bert"])

    def refuse(*_a, **_k):
        raise ValueError("this model supports only flash_attention_2 and sdpa")

    monkeypatch.setattr(model, "set_attn_implementation", refuse)
    with pytest.raises(ModelLoadError, match=r"cannot switch attention to 'eager'.*sdpa"):
        inspector.load((model, tok))


def _state(model: torch.nn.Module) -> tuple:
    digest = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(p.detach().cpu().numpy().tobytes())
    hooks = sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in model.modules()
    )
    grads = [p.grad is None for p in model.parameters()]
    return (
        digest.hexdigest(),
        hooks,
        model.training,
        model.config._attn_implementation,
        tuple(p.requires_grad for p in model.parameters()),
        all(grads),
    )


@pytest.mark.parametrize("family", ["bert", "gpt2"])
def test_every_model_run_leaves_the_model_as_loaded(tiny, family):
    m = tiny[family]
    before = _state(m.model)
    ins = m.inspect(TEXT, layers=[1], heads=[0])
    ins = m.inspect(TEXT if family == "gpt2" else "The cat sat on the [MASK].")
    ins.explain.norms()
    ins.explain.ablation()
    ins.explain.gradient()
    ins.views.neuron()
    if family == "gpt2":
        m.generate("The cat", max_new_tokens=3)
    assert _state(m.model) == before


def test_hooks_removed_when_the_forward_raises(tiny, monkeypatch):
    m = tiny["bert"]
    before = _state(m.model)
    original = type(m.model).forward

    def broken(self, *a, **k):
        raise RuntimeError("boom in forward")

    monkeypatch.setattr(type(m.model), "forward", broken)
    with pytest.raises(RuntimeError, match="boom"):
        m.inspect(TEXT, layers=[0])
    monkeypatch.setattr(type(m.model), "forward", original)
    assert _state(m.model) == before
    assert m.inspect(TEXT).attention.shape[0] == 2


def test_parallel_threads_equal_sequential(tiny):
    m = tiny["gpt2"]
    texts = [f"{TEXT} number {i}" for i in range(6)]
    sequential = [m.inspect(t).attention for t in texts]
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            # mix hooked capture, a layer subset and ablation hooks on the same model object
            if i % 3 == 1:
                m.inspect(texts[i]).explain.ablation()
            results[i] = m.inspect(texts[i]).attention
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i, want in enumerate(sequential):
        np.testing.assert_array_equal(results[i], want)


def test_out_of_memory_becomes_advice(tiny, monkeypatch):

    def exhausted(*_a, **_k):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1GB")

    monkeypatch.setattr("inspector.capture.run.record", exhausted)
    with pytest.raises(ResourceError, match=r"layers=.*heads=.*float16.*shorter input"):
        tiny["bert"].inspect(TEXT)


@pytest.mark.parametrize(
    ("sig", "exit_code", "message"),
    [
        (signal.SIGINT, 130, "inspector: interrupted"),
        (signal.SIGTERM, 143, "inspector: stopped by SIGTERM"),
        (signal.SIGHUP, 129, "inspector: stopped by SIGHUP"),
    ],
)
def test_ctrl_c_in_the_cli_leaves_nothing(tiny_dirs, tmp_path, sig, exit_code, message):
    """SIGINT, SIGTERM or SIGHUP while the CLI writes a report: one line, no file at all."""
    out_file = tmp_path / "r.html"
    code = textwrap.dedent(
        f"""
        import sys, time
        import inspector.render.report as report
        from inspector import _io
        real = _io.write_text_atomic
        def slow(path, text, **options):
            with _io.atomic_path(path) as tmp:
                tmp.write_text(text[: len(text) // 2])
                print("HALF", flush=True)
                time.sleep(60)
        _io.write_text_atomic = slow
        import inspector.render.page as page
        page.write_text_atomic = slow
        from inspector.cli import main
        sys.exit(main(["report", {str(tiny_dirs["bert"])!r}, "The cat sat.", "-o",
                       {str(out_file)!r}]))
        """
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    deadline = time.time() + 120
    line = ""
    while time.time() < deadline and "HALF" not in line:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
    assert "HALF" in line, proc.stderr.read() if proc.stderr else ""
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == exit_code
    assert err.strip().splitlines()[-1] == f"{message}; no partial output was written"
    assert list(tmp_path.iterdir()) == []  # neither the report nor its hidden temporary


def test_corpus_runs_leave_the_model_as_loaded(tiny, tmp_path):
    import inspector

    m = tiny["bart"]
    before = _state(m.model)
    inspector.atlas(m, [TEXT, "A dog barked.", "Short."], batch_size=2, progress=False)
    assert _state(m.model) == before
    g = tiny["gpt2"]
    before = _state(g.model)
    inspector.atlas(g, [TEXT, "A dog barked."], batch_size=2, progress=False)
    assert _state(g.model) == before
