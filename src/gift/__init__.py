"""gift: Guided Fine-Tuning and Transfer for instruction-tuned language models (annotate -> train -> merge -> eval)."""
from __future__ import annotations

from typing import Any

__version__ = "0.3.0"
__all__ = ["__version__", "grade_answer", "pass_at_k", "GiftError", "load_annotations", "GIFTCollator"]


def __getattr__(name: str) -> Any:
    # Lazy, so that `gift --help` does not pay for sympy and torch imports.
    if name == "grade_answer":
        from .grading import grade_answer
        return grade_answer
    if name == "pass_at_k":
        from .metrics import pass_at_k
        return pass_at_k
    if name == "load_annotations":
        from .annotate import load_annotations
        return load_annotations
    if name == "GIFTCollator":
        from .data import GIFTCollator
        return GIFTCollator
    if name == "GiftError":
        from .errors import GiftError
        return GiftError
    raise AttributeError(name)
