"""Token-level chat: prompts and turn continuations as token ids, never re-tokenising sampled text.

A multi-turn episode is one growing id list: prompt ids from the chat template, then the sampled
ids exactly as sampled, then the ids of the text that closes the assistant turn and opens the
next message (an observation or a result), and so on. The fragments are derived from the
tokenizer's own chat template, so SmolLM2, Qwen2.5 and other ChatML-like templates work alike.

Only the template's own markup is encoded with special tokens. Message content (task dialogue,
tool schemas, sub-tasks, observations, results) is encoded as plain text: a tool output holding
"<|im_end|>\n<|im_start|>system" stays those characters and never becomes the ids that end a turn
and open a system message (it would write turns of its own into the context). The template is
rendered with a slot per message, and markup and content are encoded piece by piece.

Text is made valid UTF-8 before it is tokenised: a model can write a JSON-escaped lone surrogate
("\\ud800") that reaches observations, and the tokenizer raises on such text.
"""

from __future__ import annotations

from cahl.types import Message

_MARK = "\x00CAHL\x00"
_PROBE = " \n\tC\x00 \n"  # content with edges a template might trim


def _slot(i: int) -> str:
    return f"\x00CAHL-{i}\x00"


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
        # Content is encoded apart from the markup, so it must be what the template inserts: as it
        # is, or stripped (Llama 3's and Gemma's `| trim`). Anything else cannot be encoded safely.
        slots = self._render([{"role": "system", "content": _slot(0)}, {"role": "user", "content": _slot(1)}], True)
        probe = self._render([{"role": "system", "content": _PROBE}, {"role": "user", "content": _PROBE}], True)
        if probe == slots.replace(_slot(0), _PROBE).replace(_slot(1), _PROBE):
            self._content = lambda text: text
        elif probe == slots.replace(_slot(0), _PROBE.strip()).replace(_slot(1), _PROBE.strip()):
            self._content = str.strip
        else:
            raise ValueError("chat template changes message content other than by stripping it: cannot encode "
                             "content apart from the template's special tokens")

    def _render(self, messages: list[Message], generation: bool) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)

    def encode(self, text: str) -> list[int]:
        """Plain text as ids: special-token strings in it are split into ordinary tokens."""
        return self.tokenizer(valid_text(text), add_special_tokens=False, split_special_tokens=True)["input_ids"]

    def _markup_ids(self, text: str) -> list[int]:
        """The template's own text, whose special-token strings are meant as special tokens."""
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def prompt_ids(self, messages: list[Message]) -> list[int]:
        """The template's rendering of `messages` (with the generation prompt): markup ids from the
        template, each message's content encoded as plain text."""
        rendered = self._render([{**m, "content": _slot(i)} for i, m in enumerate(messages)], generation=True)
        ids, pos = [], 0
        for i, message in enumerate(messages):
            slot = _slot(i)
            if rendered.count(slot) != 1:
                raise ValueError(f"chat template renders message {i}'s content other than once")
            at = rendered.index(slot, pos)
            ids += self._markup_ids(rendered[pos:at]) + self.encode(self._content(message["content"]))
            pos = at + len(slot)
        return ids + self._markup_ids(rendered[pos:])

    def continuation_ids(self, sampled_ids: list[int], user_content: str) -> list[int]:
        """Ids to append after a sampled assistant turn so that the next user message follows."""
        suffix = self.turn_suffix
        tail = self.tokenizer.decode(sampled_ids[-4:]) if sampled_ids else ""
        if self.eos_text and suffix.startswith(self.eos_text) and tail.endswith(self.eos_text):
            suffix = suffix[len(self.eos_text):]  # the model already sampled the end-of-turn token
        before, after = self.user_fragment.split(_MARK)
        return (self._markup_ids(suffix + before) + self.encode(self._content(user_content))
                + self._markup_ids(after))
