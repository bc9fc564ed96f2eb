"""What a `gift run` will cost before it runs: stage counts, tokens, bytes written and an estimate of time.

Pure arithmetic from a model's shape, the data's token counts and the run's grids; experiment.py gathers the
inputs. Parameters and LoRA sizes follow the Llama/Qwen2/Mistral/Phi-3 layout (attention with grouped KV heads,
gated MLP); times are FLOPs over an effective throughput (6·P per trained token with activations recomputed as the
published recipe does, 2·P per annotated or generated token), so they are estimates to plan by, stated as such.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Effective throughputs, FLOP/s. h100: one H100 SXM in bf16 (989 TFLOP/s dense) at 40% for LoRA training and
# teacher-forced annotation; generation 10% with vLLM's continuous batching and 1% with HF generate (decoding is
# bound by memory bandwidth). cpu: this project's Sapphire Rapids in float32, one core, measured on the bundled pair
# by bench/run_scale.py (BENCHMARKS.md, "What a gift run costs"): 33 trainings, 6.4M tokens, 580 s (6.2e10); 834k
# tokens generated in 467 s of evaluation (3.3e9). Every figure can be overridden by --throughput KEY=VALUE.
PRESETS: dict[str, dict[str, float]] = {
    "h100": {"train_flops": 4.0e14, "forward_flops": 4.0e14, "vllm_flops": 1.0e14, "hf_flops": 1.0e13,
             "load_bytes_s": 2.0e9, "write_bytes_s": 1.0e9, "engine_start_s": 60.0, "param_bytes": 2},
    "cpu": {"train_flops": 6.0e10, "forward_flops": 6.0e10, "vllm_flops": 0.0, "hf_flops": 3.0e9,
            "load_bytes_s": 5.0e8, "write_bytes_s": 3.0e8, "engine_start_s": 0.0, "param_bytes": 4},
}


def layer_shapes(shape: dict[str, Any]) -> list[tuple[int, int]]:
    """(in, out) of each linear projection of one decoder layer: q, k, v, o, gate, up, down."""
    h, inter = shape["hidden_size"], shape["intermediate_size"]
    kv = h // shape["num_attention_heads"] * (shape.get("num_key_value_heads") or shape["num_attention_heads"])
    return [(h, h), (h, kv), (h, kv), (h, h), (h, inter), (h, inter), (inter, h)]


def parameters(shape: dict[str, Any], tied: bool) -> int:
    """Weights of the model (norms and biases aside, under 0.1%)."""
    layers = shape["num_hidden_layers"] * sum(i * o for i, o in layer_shapes(shape))
    return layers + shape["vocab_size"] * shape["hidden_size"] * (1 if tied else 2)


def lora_parameters(shape: dict[str, Any], rank: int) -> int:
    """A rank-r adapter on every linear projection of every layer (the published all-linear target)."""
    return shape["num_hidden_layers"] * rank * sum(i + o for i, o in layer_shapes(shape))


@dataclass
class Workload:
    """What a run does, counted from its config: each stage with the tokens it processes."""
    annotations: int
    annotate_tokens: int  # per annotation
    trainings: int
    train_tokens: int  # per training
    dev_evaluations: int
    dev_tokens: int  # generated per dev evaluation, at most
    test_evaluations: int
    test_tokens: int  # generated per test evaluation, at most
    merges: int
    backend: str
    engine_starts: int
    model_loads: int
    check_tokens: int = 0  # scored by the base model in the pair check (its preconditions), when not yet done
    done: dict[str, int] = field(default_factory=dict)  # stages already finished in OUT


@dataclass
class Cost:
    stages: dict[str, int]
    tokens: dict[str, int]
    bytes: dict[str, int]
    seconds: dict[str, float]


def cost(work: Workload, params: int, adapter_params: int, model_bytes: int, rates: dict[str, float]) -> Cost:
    """Bytes written and seconds spent by the stages still to run (finished ones cost nothing again)."""
    todo = {k: max(getattr(work, k) - work.done.get(k, 0), 0) for k in
            ("annotations", "trainings", "dev_evaluations", "test_evaluations", "merges")}
    gen_rate = rates["vllm_flops"] if work.backend == "vllm" else rates["hf_flops"]
    tokens = {"annotate": todo["annotations"] * work.annotate_tokens + work.check_tokens,  # and the pair check's pass
              "train": todo["trainings"] * work.train_tokens,
              "generate": todo["dev_evaluations"] * work.dev_tokens + todo["test_evaluations"] * work.test_tokens}
    adapter_bytes = adapter_params * int(rates["param_bytes"])
    written = {"adapters": todo["trainings"] * adapter_bytes, "merged models": todo["merges"] * model_bytes,
               "annotations": todo["annotations"] * work.annotate_tokens * 12}  # ids, q and offsets: ~12 B a token
    read = (work.model_loads + 3 * todo["merges"]) * model_bytes  # a merge is read back twice by its parity check
    seconds = {"annotate": 2 * params * tokens["annotate"] / rates["forward_flops"],
               "train": 6 * params * tokens["train"] / rates["train_flops"],
               "generate": 2 * params * tokens["generate"] / gen_rate if gen_rate else float("inf"),
               "load and merge": read / rates["load_bytes_s"] + written["merged models"] / rates["write_bytes_s"],
               "engine starts": work.engine_starts * rates["engine_start_s"]}
    return Cost({**todo, "engine starts": work.engine_starts, "model loads": work.model_loads}, tokens, written, seconds)


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def human_seconds(s: float) -> str:
    if s == float("inf"):
        return "n/a"
    return f"{s / 3600:.1f} h" if s >= 3600 else f"{s / 60:.1f} min" if s >= 60 else f"{s:.0f} s"


def describe(c: Cost, preset: str, free: int | None) -> str:
    """The plan as a person reads it."""
    lines = ["Stages still to run: " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in c.stages.items()),
             "Tokens: " + ", ".join(f"{k} {v:,}" for k, v in c.tokens.items()) + " (generated: at most, every "
             "completion at max_new_tokens)",
             "Written: " + ", ".join(f"{k} {human_bytes(v)}" for k, v in c.bytes.items())
             + f"; total {human_bytes(sum(c.bytes.values()))}" + (f" (free: {human_bytes(free)})" if free is not None
                                                                 else ""),
             f"Time on {preset} (an estimate from effective throughputs, --throughput to set yours): "
             + ", ".join(f"{k} {human_seconds(v)}" for k, v in c.seconds.items())
             + f"; total {human_seconds(sum(c.seconds.values()))}"]
    return "\n".join(lines)
