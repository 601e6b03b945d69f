"""The built-in demo model: a tiny real ``gpt_oss`` model trained by our own code.

``corpus`` writes the Harmony conversations, ``train`` fits the model on them with the loss
restricted to the corpus vocabulary, and ``build`` turns the compact weights into a normal model
folder in the user cache dir (from the weights shipped in the package, or by training anew).
"""

from __future__ import annotations

from pathlib import Path

from harmony_tui.engine.model_source import Progress, register_named_model

DEMO = "demo"  # --model demo


def _demo_folder(progress: Progress) -> Path:
    from harmony_tui.demo.build import ensure_demo_model

    return ensure_demo_model(progress)


register_named_model(DEMO, _demo_folder)
