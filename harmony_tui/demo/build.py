"""Build, pack and unpack the demo model.

The package ships the compact trained weights (``weights/demo.safetensors``, a few MB). The first
use unpacks them into a normal mlx-lm model folder under the user cache dir (about a second); later
launches load that folder directly. ``harmony-tui demo-model build`` retrains from scratch with the
same code, deterministically for a given seed. When the shipped weights are missing or were made
from a different corpus, the first use trains them (with progress) instead.

The folder also gets Hugging Face tokenizer files (``tokenizer.json`` made from o200k_base plus
the Harmony special tokens, and a ``tokenizer_config.json`` with a simple Harmony chat template),
so that ``mlx_lm.load`` and ``mlx_lm.server`` can load it too (the server benchmark needs that).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harmony_tui import paths
from harmony_tui.demo.corpus import CONTEXT, SCRIPTS, build_examples, corpus_fingerprint
from harmony_tui.demo.train import TrainConfig, TrainedDemo, train_demo

Progress = Callable[[str, float | None], None]
FORMAT = "harmony-tui-demo/1"
PACKAGED = Path(__file__).parent / "weights" / "demo.safetensors"
COMPACT_NAME = "demo-compact.safetensors"
MARKER = "harmony_tui_demo.json"
# Scales the exported head: the trained distribution, made sharper so that the default
# temperature of 1.0 reproduces the scripts reliably.
SHARPEN = 2.0


def _quiet(message: str, fraction: float | None) -> None:
    pass


def demo_root() -> Path:
    return paths.cache_dir() / "demo-model"


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


# -- compact weights -------------------------------------------------------------------------


def save_compact(trained: TrainedDemo, path: Path, init: str | None = None) -> None:
    """Write the compact weights and their metadata (atomically); ``init`` is the digest of
    the compact weights training continued from."""
    import mlx.core as mx

    arrays = dict(trained.weights)
    arrays["vocab_ids"] = mx.array(trained.vocab_ids, dtype=mx.int32)
    metadata = {
        "format": FORMAT,
        "corpus": corpus_fingerprint(),
        "train_config": json.dumps(trained.config.to_dict(), sort_keys=True),
        "final_loss": f"{trained.final_loss:.6g}",
        "steps_done": str(trained.steps_done),
    }
    if init:
        metadata["init"] = init
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        tmp_file = Path(tmp) / "compact.safetensors"
        mx.save_safetensors(str(tmp_file), arrays, metadata=metadata)
        tmp_file.replace(path)


def read_compact(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """Arrays and metadata of a compact file; raises ValueError if it is not one."""
    import mlx.core as mx

    try:
        arrays, metadata = mx.load(str(path), return_metadata=True)
    except Exception as err:
        raise ValueError(f"{path}: not a readable safetensors file ({err})") from err
    if metadata.get("format") != FORMAT or "vocab_ids" not in arrays:
        raise ValueError(f"{path}: not a {FORMAT} file")
    return arrays, metadata


def packaged_weights_usable() -> bool:
    """True when the shipped weights exist and were trained on today's corpus."""
    if not PACKAGED.is_file():
        return False
    try:
        _, metadata = read_compact(PACKAGED)
    except ValueError:
        return False
    return metadata.get("corpus") == corpus_fingerprint()


# -- model folder ----------------------------------------------------------------------------


def expand(compact: Path, target: Path) -> Path:
    """Turn compact weights into an mlx-lm ``gpt_oss`` folder at ``target`` (atomically)."""
    import mlx.core as mx

    from harmony_tui.engine.formats.harmony import VOCAB_SIZE

    arrays, metadata = read_compact(compact)
    config = TrainConfig(**json.loads(metadata["train_config"]))
    vocab = arrays.pop("vocab_ids")
    embed = arrays.pop("model.embed_tokens.weight")
    head = arrays.pop("lm_head.weight")
    unk = embed.shape[0] - 1
    full_embed = mx.tile(embed[unk: unk + 1], (VOCAB_SIZE, 1))
    full_embed[vocab] = embed[:unk]
    full_head = mx.zeros((VOCAB_SIZE, head.shape[1]), dtype=head.dtype)
    full_head[vocab] = head[:unk] * SHARPEN
    arrays["model.embed_tokens.weight"] = full_embed
    arrays["lm_head.weight"] = full_head
    model_config = config.model_config(VOCAB_SIZE)
    model_config["max_position_embeddings"] = CONTEXT
    marker = {
        "name": "harmony-tui demo model",
        "compact_sha256": file_digest(compact),
        "corpus": metadata.get("corpus"),
        "final_loss": metadata.get("final_loss"),
        "sharpen": SHARPEN,
        "prompts": [s.prompt for s in SCRIPTS],
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        mx.save_safetensors(str(tmp / "model.safetensors"), arrays)
        (tmp / "config.json").write_text(json.dumps(model_config, indent=2) + "\n")
        shutil.copyfile(compact, tmp / COMPACT_NAME)
        (tmp / MARKER).write_text(json.dumps(marker, indent=2, ensure_ascii=False) + "\n")
        if target.exists():
            shutil.rmtree(target)
        tmp.replace(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    write_tokenizer_files(target)
    return target


def is_demo_folder(path: Path) -> bool:
    return (path / MARKER).is_file() and (path / "model.safetensors").is_file()


# -- Hugging Face tokenizer files (for mlx_lm.load / mlx_lm.server) -----------------------------

O200K_PATTERN = "|".join([
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"\p{N}{1,3}", r" ?[^\s\p{L}\p{N}]+[\r\n/]*", r"\s*[\r\n]+", r"\s+(?!\S)", r"\s+",
])
TOKENIZER_VERSION = 1
# Renders plain conversations (system/developer/user/assistant text) as our Harmony renderer does.
HARMONY_CHAT_TEMPLATE = (
    "{%- set effort = reasoning_effort if reasoning_effort is defined and reasoning_effort "
    "else 'medium' -%}"
    "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\n"
    "Knowledge cutoff: 2024-06\nCurrent date: {{ strftime_now('%Y-%m-%d') }}\n\n"
    "Reasoning: {{ effort }}\n\n# Valid channels: analysis, commentary, final. Channel must be "
    "included for every message.<|end|>"
    "{%- set ns = namespace(parts=[]) -%}"
    "{%- for m in messages if m.role in ['system', 'developer'] and m.content -%}"
    "{%- set ns.parts = ns.parts + [m.content] -%}{%- endfor -%}"
    "{%- if ns.parts -%}<|start|>developer<|message|># Instructions\n\n"
    "{{ ns.parts | join('\n\n') }}<|end|>{%- endif -%}"
    "{%- for m in messages -%}"
    "{%- if m.role == 'user' -%}<|start|>user<|message|>{{ m.content }}<|end|>"
    "{%- elif m.role == 'assistant' and m.content -%}"
    "<|start|>assistant<|channel|>final<|message|>{{ m.content }}<|end|>"
    "{%- endif -%}{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|start|>assistant{%- endif -%}"
)


def _byte_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (what ByteLevel expects)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    chars = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, chars, strict=True)}


def harmony_tokenizer_json() -> Path:
    """``tokenizer.json`` for o200k_harmony, built once into the cache (a few seconds)."""
    target = paths.cache_dir() / "tokenizer" / f"o200k-harmony-{TOKENIZER_VERSION}.json"
    if target.is_file():
        return target
    try:
        from tokenizers import AddedToken, Regex, Tokenizer, decoders, pre_tokenizers
        from tokenizers.models import BPE
    except ImportError as err:  # shipped with transformers, which mlx-lm requires
        raise RuntimeError("the 'tokenizers' package is needed to write tokenizer.json") \
            from err

    from harmony_tui.engine.formats.harmony import FIRST_SPECIAL, VOCAB_SIZE
    from harmony_tui.engine.vocab import VOCAB_FILE, ensure_harmony_vocab, harmony_encoding

    folder = ensure_harmony_vocab() or Path(os.environ["TIKTOKEN_ENCODINGS_BASE"])
    ranks: dict[bytes, int] = {}
    for line in (folder / VOCAB_FILE).read_bytes().splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    table = _byte_to_unicode()

    def text(token: bytes) -> str:
        return "".join(table[b] for b in token)

    merges: list[tuple[int, int, int, bytes, bytes]] = []
    for token, rank in ranks.items():
        for cut in range(1, len(token)):
            left, right = token[:cut], token[cut:]
            if left in ranks and right in ranks:
                merges.append((rank, ranks[left], ranks[right], left, right))
    merges.sort()
    model = BPE({text(t): r for t, r in ranks.items()},
                [(text(m[3]), text(m[4])) for m in merges], fuse_unk=False, ignore_merges=True)
    tokenizer = Tokenizer(model)
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(O200K_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tokenizer.decoder = decoders.ByteLevel()
    encoding = harmony_encoding()
    tokenizer.add_special_tokens([AddedToken(encoding.decode([i]), special=True, normalized=False)
                                  for i in range(FIRST_SPECIAL, VOCAB_SIZE)])
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tokenizer.save(str(tmp))
    tmp.replace(target)
    return target


def write_tokenizer_files(folder: Path) -> None:
    """Give a gpt_oss model folder ``tokenizer.json``, ``tokenizer_config.json`` and the stop
    tokens in ``config.json``, unless it has them already."""
    if (folder / "tokenizer.json").is_file() and (folder / "tokenizer_config.json").is_file():
        return
    source = harmony_tokenizer_json()
    tmp = folder / ".tokenizer.json.tmp"
    try:
        tmp.unlink(missing_ok=True)
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    tmp.replace(folder / "tokenizer.json")
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": CONTEXT,
        "bos_token": "<|startoftext|>", "eos_token": "<|return|>", "pad_token": "<|endoftext|>",
        "clean_up_tokenization_spaces": False, "chat_template": HARMONY_CHAT_TEMPLATE,
    }
    paths.atomic_write_text(folder / "tokenizer_config.json",
                            json.dumps(tokenizer_config, indent=2) + "\n")
    config_file = folder / "config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    if "eos_token_id" not in config:
        from harmony_tui.engine.formats.harmony import CALL, ENDOFTEXT, RETURN

        config["eos_token_id"] = [RETURN, CALL, ENDOFTEXT]
        paths.atomic_write_text(config_file, json.dumps(config, indent=2) + "\n")


# -- building --------------------------------------------------------------------------------


def build_compact(config: TrainConfig, output: Path, progress: Progress | None = None,
                  init: Path | None = None, stop_after: int | None = None) -> Path:
    """Train and write compact weights to ``output``: from scratch, or continuing the compact
    weights ``init`` (the shipped weights record its digest)."""
    from harmony_tui.engine.formats.harmony import HarmonyFormat

    progress = progress or _quiet
    progress("Writing the demo corpus", 0.0)
    fmt = HarmonyFormat()
    examples = build_examples(fmt, config.seed, config.examples)

    def on_step(step: int, steps: int, loss: float) -> None:
        if step == steps or step % 5 == 0:
            progress(f"Training the demo model: step {step}/{steps}, loss {loss:.4f}",
                     step / steps)

    start = None
    if init is not None:
        arrays, _ = read_compact(init)
        start = ([int(t) for t in arrays.pop("vocab_ids").tolist()], arrays)
    digest = file_digest(init) if init is not None else None

    def checkpoint(trained: TrainedDemo) -> None:
        save_compact(trained, output, digest)

    trained = train_demo(examples, config, on_step, start, checkpoint, stop_after)
    save_compact(trained, output, digest)
    return output


def ensure_demo_model(progress: Progress | None = None) -> Path:
    """The demo model folder in the user cache, unpacking or building it on first use."""
    progress = progress or _quiet
    root = demo_root()
    if packaged_weights_usable():
        compact = PACKAGED
    else:
        config = TrainConfig()
        key = hashlib.sha256(
            (corpus_fingerprint() + json.dumps(config.to_dict(), sort_keys=True)).encode()
        ).hexdigest()[:16]
        compact = root / f"trained-{key}.safetensors"
        if not compact.is_file():
            progress("The packaged demo weights do not match this corpus: training them", 0.0)
            build_compact(config, compact, progress)
    target = root / file_digest(compact)
    if is_demo_folder(target):
        write_tokenizer_files(target)  # folders unpacked before tokenizer files existed
        return target
    progress("Unpacking the demo model", None)
    expand(compact, target)
    for other in root.iterdir():  # keep one unpacked version
        if other.is_dir() and other != target and not other.name.startswith("."):
            shutil.rmtree(other, ignore_errors=True)
    return target
