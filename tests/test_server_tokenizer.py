"""The demo folder's Hugging Face tokenizer files, which let mlx-lm (and its server) load it."""

from __future__ import annotations

import json

from harmony_tui.engine.messages import Message, PromptSetup
from harmony_tui.engine.params import GenerationParams

SAMPLES = (
    "Hello, world! I'm   here.\n\n  def f(x):\n\treturn x*2  # ÄÖÜ 日本語 🙂 12345678",
    "<|start|>user<|message|>Hi<|end|><|start|>assistant<|channel|>final<|message|>",
    "can't WON'T Élan ñandú 3.14159 ",
)


def test_demo_folder_loads_with_mlx_lm_tokenizer(demo_engine, harmony_format):
    from mlx_lm.utils import load_tokenizer

    folder = demo_engine.model.path
    config = json.loads((folder / "config.json").read_text())
    tokenizer = load_tokenizer(folder, eos_token_ids=config["eos_token_id"])
    assert tokenizer.eos_token_ids == {200002, 200012, 199999}
    for text in SAMPLES:
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert ids == harmony_format.encode(text), text
        assert tokenizer.decode(ids) == text
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Again"}]
    rendered = tokenizer.apply_chat_template(chat, add_generation_prompt=True)
    rendered = rendered["input_ids"] if isinstance(rendered, dict) else rendered
    ours = harmony_format.render(
        [Message("system", "Be brief."), Message("user", "Hi"),
         Message("assistant", "Hello", channel="final"), Message("user", "Again")],
        PromptSetup(), GenerationParams())
    assert list(rendered) == ours  # mlx_lm.server sees the prompt our engine renders
