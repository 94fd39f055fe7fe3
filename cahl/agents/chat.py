"""Token-level chat: prompts and turn continuations as token ids, never re-tokenising sampled text.

A multi-turn episode is one growing id list: prompt ids from the chat template, then the sampled
ids exactly as sampled, then the ids of the text that closes the assistant turn and opens the
next message (an observation or a result), and so on. The fragments are derived from the
tokenizer's own chat template, so SmolLM2, Qwen2.5 and other ChatML-like templates work alike.

Text is made valid UTF-8 before it is tokenised: a model can write a JSON-escaped lone surrogate
("\\ud800") that reaches observations, and the tokenizer raises on such text.
"""

from __future__ import annotations

from cahl.types import Message

_MARK = "\x00CAHL\x00"


def valid_text(text: str) -> str:
    """`text` with lone surrogates (not encodable as UTF-8) replaced by "?"."""
    return text.encode("utf-8", "replace").decode("utf-8")


class ChatFormat:
    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        sys = {"role": "system", "content": "S"}
        user = {"role": "user", "content": "U"}
        a = self._render([sys, user], generation=True)
        b = self._render([sys, user, {"role": "assistant", "content": _MARK}], generation=False)
        c = self._render([sys, user, {"role": "assistant", "content": _MARK},
                          {"role": "user", "content": _MARK}], generation=True)
        if not b.startswith(a) or not c.startswith(b):
            raise ValueError("chat template is not append-only: cannot build multi-turn token ids for it")
        # text that closes an assistant turn, e.g. "<|im_end|>\n"
        self.turn_suffix = b[len(a):].split(_MARK, 1)[1]
        # text of the next user message plus the generation prompt, with a slot for the content
        self.user_fragment = c[len(b):]
        if self.user_fragment.count(_MARK) != 1:
            raise ValueError("chat template renders the user content other than once")
        eos = tokenizer.eos_token or ""
        self.eos_text = eos

    def _render(self, messages: list[Message], generation: bool) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(valid_text(text), add_special_tokens=False)["input_ids"]

    def prompt_ids(self, messages: list[Message]) -> list[int]:
        return self.encode(self._render(messages, generation=True))

    def continuation_ids(self, sampled_ids: list[int], user_content: str) -> list[int]:
        """Ids to append after a sampled assistant turn so that the next user message follows."""
        suffix = self.turn_suffix
        tail = self.tokenizer.decode(sampled_ids[-4:]) if sampled_ids else ""
        if self.eos_text and suffix.startswith(self.eos_text) and tail.endswith(self.eos_text):
            suffix = suffix[len(self.eos_text):]  # the model already sampled the end-of-turn token
        return self.encode(suffix + self.user_fragment.replace(_MARK, user_content))
