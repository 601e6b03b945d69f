"""Speculative decoding on the serial path: a draft model or prompt lookup proposes tokens, the
model verifies them all in one forward pass, and the caches rewind past the rejected ones.

Drafters:

- ``ModelDrafter``: a small model with the same tokenizer (``draft_model``) drafts
  ``draft_tokens`` tokens greedily from its own KV cache.
- ``LookupDrafter``: prompt lookup (``prompt_lookup = N``): the longest n-gram
  (``MAX_NGRAM`` down to ``MIN_NGRAM`` tokens) that ends the context and occurred earlier in it
  proposes the up to ``N`` tokens that followed its last occurrence (its first, when fewer
  than ``N`` follow the last: a repeating run).
- ``LookupThenModel``: both set: prompt lookup where the context has a match, else the draft
  model. No model; good when the answer copies
  from the context (edits, code, quotes).

Acceptance: each verified position is *sampled* with the turn's own sampler and logits
processors (from the model's logits given the context and the drafts before it); a draft is
accepted while it equals the sampled token, and the first sampled token that differs (or the
one after the last draft) is emitted too. Every emitted token is therefore drawn from exactly
the distribution plain decoding draws it from, whatever the sampling settings (top-p, min-p,
XTC, penalties); at temperature 0 the output is the plain greedy output. (The textbook rule,
accept with probability min(1, p/q), accepts more often with a sampling draft model, but needs
the draft's and the model's distributions after every sampler transform; drafts here are the
draft model's greedy picks, for which both rules coincide at temperature 0.) A seeded turn
draws its random numbers in another order than plain decoding, so it is reproducible but not
the same text as without speculation.

Caches are made rewindable first (``rewind_cache.py``): the sliding-window layers of gpt-oss
become ``WindowKVCache`` with ``slack`` = the most tokens a step can reject.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from harmony_tui.engine.rewind_cache import rewind, rewindable
from harmony_tui.errors import HarmonyTuiError

MAX_NGRAM = 3
MIN_NGRAM = 2


class DraftModelError(HarmonyTuiError):
    """The draft model cannot draft for this model (another tokenizer or vocabulary)."""

    error_code = "invalid_request"


@dataclass
class SpecCounts:
    """What speculation did in one turn."""

    drafted: int = 0  # tokens proposed
    accepted: int = 0  # of which the model accepted
    steps: int = 0  # forward passes of the model while decoding

    @property
    def acceptance(self) -> float:
        return self.accepted / self.drafted if self.drafted else 0.0


class Drafter(Protocol):
    """Proposes tokens to follow ``history`` and learns what was kept."""

    most: int

    def propose(self, history: Sequence[int], k: int) -> list[int]: ...

    def accept(self, drafts: Sequence[int], accepted: int, emitted: Sequence[int]) -> None: ...


class LookupDrafter:
    """Prompt lookup: drafts what followed the last earlier occurrence of the context's tail."""

    def __init__(self, most: int, history: Sequence[int]) -> None:
        self.most = most
        # n-gram -> where the continuation of its last (and first) occurrence starts
        self._last: dict[tuple[int, ...], int] = {}
        self._first: dict[tuple[int, ...], int] = {}
        self._indexed = 0
        self._history: list[int] = []
        self._extend(history)

    def _extend(self, tokens: Sequence[int]) -> None:
        history = self._history
        history.extend(tokens)
        # n-grams whose continuation is now present: those ending before the last token
        for p in range(max(self._indexed, 1), len(history)):
            for n in range(MIN_NGRAM, MAX_NGRAM + 1):
                if p - n >= 0:
                    gram = tuple(history[p - n:p])
                    self._last[gram] = p
                    self._first.setdefault(gram, p)
        self._indexed = max(self._indexed, len(history))

    def propose(self, history: Sequence[int], k: int) -> list[int]:
        mine = self._history
        for n in range(MAX_NGRAM, MIN_NGRAM - 1, -1):
            if len(mine) < n:
                continue
            gram = tuple(mine[-n:])
            at = self._last.get(gram)
            if at is not None:
                if len(mine) - at < k:  # too close to the end (a repeating run): the first
                    at = self._first[gram]
                return mine[at:at + k]
        return []

    def accept(self, drafts: Sequence[int], accepted: int, emitted: Sequence[int]) -> None:
        self._extend(emitted)


class ModelDrafter:
    """A draft model with its own cache; drafts are its greedy choices."""

    def __init__(self, model: Any, cache: list[Any], most: int, last: int) -> None:
        self.most = most
        self.model = model
        self.cache = rewindable(cache, most + 1)
        self._pending = [last]  # tokens the draft cache has not seen yet
        self._fed = 0  # drafts of the last proposal that went into the draft cache

    def propose(self, history: Sequence[int], k: int) -> list[int]:
        import mlx.core as mx

        self._fed = 0
        if k <= 0:
            return []
        drafts: list[Any] = []
        inputs = mx.array(self._pending, dtype=mx.int32)
        while True:  # one lazy graph: the drafts are evaluated together at the end
            logits = self.model(inputs[None], cache=self.cache)
            inputs = mx.argmax(logits[0, -1:], axis=-1).astype(mx.int32)
            drafts.append(inputs)
            if len(drafts) == k:
                break
            self._fed += 1
        self._pending = []
        return mx.concatenate(drafts).tolist()

    def skip(self) -> None:
        """This step's drafts come from elsewhere: the draft model only catches up later."""
        self._fed = 0

    def accept(self, drafts: Sequence[int], accepted: int, emitted: Sequence[int]) -> None:
        # The draft cache holds the pending tokens and drafts[:fed]; it must end at the
        # accepted drafts, and see the rest of ``emitted`` next time.
        kept = min(accepted, self._fed)
        rewind(self.cache, self._fed - kept)
        self._pending += list(emitted[kept:])


class LookupThenModel:
    """Prompt lookup where the context has a match, the draft model elsewhere (both set)."""

    def __init__(self, lookup: LookupDrafter, model: ModelDrafter) -> None:
        self.lookup, self.model = lookup, model
        self.most = max(lookup.most, model.most)

    def propose(self, history: Sequence[int], k: int) -> list[int]:
        drafts = self.lookup.propose(history, min(k, self.lookup.most))
        if drafts:
            self.model.skip()
            return drafts
        return self.model.propose(history, min(k, self.model.most))

    def accept(self, drafts: Sequence[int], accepted: int, emitted: Sequence[int]) -> None:
        self.lookup.accept(drafts, accepted, emitted)
        self.model.accept(drafts, accepted, emitted)


def check_draft(target: Any, draft: Any) -> None:
    """DraftModelError (one line) unless ``draft`` (a LoadedModel) shares ``target``'s
    tokenizer and vocabulary."""
    why = None
    if target.is_gpt_oss != draft.is_gpt_oss:
        kinds = {True: "Harmony (gpt_oss)", False: "its own chat template"}
        why = (f"it uses {kinds[draft.is_gpt_oss]} tokens, the model {target.name} uses "
               f"{kinds[target.is_gpt_oss]}")
    elif _vocab_rows(draft) != _vocab_rows(target):
        why = (f"its vocabulary has {_vocab_rows(draft)} tokens, the model {target.name}'s "
               f"has {_vocab_rows(target)}")
    elif not target.is_gpt_oss:
        mine = target.format.tokenizer.get_vocab()
        theirs = draft.format.tokenizer.get_vocab()
        if mine != theirs:
            why = f"its tokenizer differs from the model {target.name}'s"
    if why:
        raise DraftModelError(f"draft model {draft.name}: {why}; a draft model must use the "
                              "same tokenizer")


def _vocab_rows(loaded: Any) -> int:
    config = loaded.config
    return int(config.get("vocab_size") or (config.get("text_config") or {}).get("vocab_size")
               or loaded.format.vocab_size)


def speculative_tokens(model: Any, cache: list[Any], prompt: Sequence[int], sampler: Any,
                       processors: list[Any], max_tokens: int, stream: Any, drafter: Drafter,
                       counts: SpecCounts, with_logprobs: bool = False,
                       after_step: Callable[[list[Any]], None] | None = None) -> Iterator[Any]:
    """Like ``decode_tokens``: up to ``max_tokens`` tokens after ``prompt`` (whose last token is
    not yet in ``cache``), but each model pass verifies the drafter's proposals. ``cache`` must be
    rewindable (``rewindable``); ``counts`` is updated as it goes."""
    import mlx.core as mx

    history = list(prompt)
    produced = 0
    with mx.stream(stream):
        while produced < max_tokens:
            k = min(drafter.most, max_tokens - produced - 1)
            drafts = drafter.propose(history, k)[:k] if k > 0 else []
            inputs = [history[-1], *drafts]
            logits = model(mx.array(inputs, dtype=mx.int32)[None], cache=cache)[0]
            if after_step is not None:
                after_step(cache)
            if processors:  # row i sees the context and the drafts before it
                context = mx.array(history + drafts, dtype=mx.int32)  # once per step
                rows = []
                for i in range(len(inputs)):
                    row = logits[i:i + 1]
                    for processor in processors:
                        row = processor(context[:len(history) + i], row)
                    rows.append(row)
                logits = mx.concatenate(rows, axis=0)
            logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
            sampled = sampler(logprobs)
            mx.eval(sampled)
            picks = sampled.tolist()
            accepted = 0
            while accepted < len(drafts) and picks[accepted] == drafts[accepted]:
                accepted += 1
            emitted = [*drafts[:accepted], picks[accepted]]
            rewind(cache, len(drafts) - accepted)
            drafter.accept(drafts, accepted, emitted)
            counts.steps += 1
            counts.drafted += len(drafts)
            counts.accepted += accepted
            history.extend(emitted)
            for i, token in enumerate(emitted):
                yield (token, logprobs[i:i + 1]) if with_logprobs else token
                produced += 1
                if produced >= max_tokens:
                    return
            if counts.steps % 64 == 0:
                mx.clear_cache()
