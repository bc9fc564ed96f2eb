"""A training run killed with SIGKILL and restarted with --resume ends with the adapter of an
uninterrupted run; a killed experiment resumes without redoing finished stages."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from safetensors.torch import load_file

from gift.cli import main
from gift.config import TrainConfig
from gift.errors import GiftError
from gift.train import train
from tests.integration.test_core import do_annotate

STEPS, SAVE = 60, 10


def train_argv(base, ann, out, *extra):
    return ["train", "--model", str(base), "--data", str(ann), "--out", str(out), "--rank", "8", "--alpha", "16",
            "--batch-size", "2", "--grad-accum", "2", "--max-steps", str(STEPS), "--save-steps", str(SAVE),
            "--seed", "3", "--padding-free", "on", *extra]  # default LoRA dropout: the RNG state must be restored too


@pytest.mark.slow
def test_sigkill_then_resume_equals_an_uninterrupted_run(make_pair, arith_jsonl, tmp_path):
    base, instruct = make_pair("llama", True, hidden=64, intermediate=128)
    ann = do_annotate(instruct, arith_jsonl, tmp_path / "ann")
    assert main(train_argv(base, ann, tmp_path / "straight")) == 0

    out = tmp_path / "killed"
    log = tmp_path / "killed.partial" / "log.jsonl"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "gift.cli", *train_argv(base, ann, out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:  # kill once a checkpoint exists and more steps ran
        if log.exists() and len(log.read_text().splitlines()) >= SAVE + 3:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not out.exists()
    steps_before = len(log.read_text().splitlines())
    assert main(train_argv(base, ann, out, "--resume")) == 0
    straight = load_file(tmp_path / "straight" / "adapter_model.safetensors")
    resumed = load_file(out / "adapter_model.safetensors")
    for k in straight:
        assert ((resumed[k] - straight[k]).norm() / straight[k].norm().clamp_min(1e-12)).item() < 1e-5, k
    log_steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert log_steps == list(range(1, STEPS + 1))  # steps after the checkpoint were redone once, not duplicated
    metas = [json.loads((d / "gift_train.json").read_text()) for d in (tmp_path / "straight", out)]
    assert metas[0]["packed_steps"] == metas[1]["packed_steps"] == STEPS  # the whole run's, not since the resume
    print(f"killed after {steps_before} logged steps; resumed from the checkpoint and matched the straight run")


def test_resume_refuses_other_settings_and_a_missing_checkpoint(make_pair, arith_jsonl, tmp_path, monkeypatch):
    from gift import train as train_module
    base, _ = make_pair("llama", True)
    cfg = dict(model=str(base), data=str(arith_jsonl), out=str(tmp_path / "ad"), method="sft", rank=4, max_steps=4,
               batch_size=2, save_steps=2)
    with pytest.raises(GiftError, match="--resume: no checkpoint"):
        train(TrainConfig(**cfg, resume=True))
    real = train_module.save_checkpoint

    def stop(*args, **kwargs):
        real(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "save_checkpoint", stop)
    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(**cfg))
    monkeypatch.setattr(train_module, "save_checkpoint", real)
    with pytest.raises(GiftError, match="--resume: lr was 0.0002 in the interrupted run, now 0.001"):
        train(TrainConfig(**{**cfg, "lr": 1e-3}, resume=True))
    train(TrainConfig(**cfg, resume=True))
    assert (tmp_path / "ad" / "adapter_model.safetensors").exists() and not (tmp_path / "ad.partial").exists()


def test_checkpoints_restore_every_generator():
    """Dropout masks come from the CPU generator on a CPU and from each device's on a GPU: both are saved."""
    import torch

    from gift.train import rng_state, set_rng_state

    state = rng_state()
    expected = [torch.rand(3)] + ([torch.rand(3, device=f"cuda:{i}") for i in range(torch.cuda.device_count())])
    set_rng_state(state)
    again = [torch.rand(3)] + ([torch.rand(3, device=f"cuda:{i}") for i in range(torch.cuda.device_count())])
    assert all(torch.equal(a, b) for a, b in zip(expected, again))
    assert len(state["cuda"]) == torch.cuda.device_count()
