"""The Decoder's KV store: one layer's keys and values for every slot of the continuous batch."""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicLayer


class SlotLayer(DynamicLayer):
    """One layer's KV for the Decoder: a store [slots, heads, capacity, dim] of which the first `n`
    columns are in use; `keys`/`values` are views of them, so attention sees exactly a
    concatenated cache. Decode writes each new column in place (transformers' DynamicLayer
    concatenates, copying the whole cache once per token and layer: ~1.2 GB per step at 32 rows x
    800 tokens of the 135M model). Every byte is initialised, masked columns included: a masked
    NaN would still poison attention (0 x NaN)."""

    def __init__(self, like: torch.Tensor) -> None:
        super().__init__()
        self.device, self.is_initialized, self.n = like.device, True, 0
        self.joining: tuple | None = None  # (source row, slot, column) of extra rows' KV during a joined forward
        self._k = like.new_zeros((0, like.shape[1], 0, like.shape[3]))
        self._v = self._k.clone()
        self._expose()

    def _expose(self) -> None:
        self.keys, self.values = self._k[:, :, :self.n], self._v[:, :, :self.n]

    def _resized(self, store: torch.Tensor, slots: int, columns: int, offset: int) -> torch.Tensor:
        """A zeroed store of the given size holding columns [offset, n) of `store`, moved to column 0
        (offset < 0 leaves -offset zero columns in front)."""
        out = store.new_zeros((slots, store.shape[1], columns, store.shape[3]))
        keep = store[:, :, max(offset, 0):self.n]
        out[:store.shape[0], :, max(-offset, 0):max(-offset, 0) + keep.shape[2]] = keep
        return out

    def update(self, key_states, value_states, *args, **kwargs):
        extra = None
        if self.joining is not None:  # rows past the slots are joining prompts' tokens: written where they go
            slots = self._k.shape[0]
            extra = key_states[slots:, :, 0], value_states[slots:, :, 0]
            key_states, value_states = key_states[:slots], value_states[:slots]
        t = key_states.shape[2]
        if self.n + t > self._k.shape[2]:
            columns = self.n + max(t, self._k.shape[2] // 2, 16)
            self._k, self._v = (self._resized(x, x.shape[0], columns, 0) for x in (self._k, self._v))
        self._k[:, :, self.n:self.n + t], self._v[:, :, self.n:self.n + t] = key_states, value_states
        if extra is not None:
            source, slots, columns = self.joining
            self._k[slots, :, columns], self._v[slots, :, columns] = extra[0][source], extra[1][source]
        self.n += t
        self._expose()
        return self.keys, self.values

    def put(self, slots: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, column: int) -> None:
        """Write rows' KV [len(slots), heads, w, dim] into `slots` at columns [column, column + w)."""
        self._k[slots, :, column:column + keys.shape[2]] = keys
        self._v[slots, :, column:column + values.shape[2]] = values

    def add_slots(self, count: int) -> None:
        self._k, self._v = (self._resized(x, x.shape[0] + count, x.shape[2], 0) for x in (self._k, self._v))
        self._expose()

    def widen(self, extra: int) -> None:
        """`extra` zero columns in front (for a prompt longer than the columns in use)."""
        self._k, self._v = (self._resized(x, x.shape[0], x.shape[2] + extra, -extra) for x in (self._k, self._v))
        self.n += extra
        self._expose()

    def drop_columns(self, count: int) -> None:
        self._k, self._v = (self._resized(x, x.shape[0], x.shape[2] - count, count) for x in (self._k, self._v))
        self.n -= count
        self._expose()

    def keep(self, slots: torch.Tensor) -> None:
        self._k, self._v = self._k[slots], self._v[slots]
        self._expose()

    def crop(self, tokens_to_remove: int) -> None:
        raise NotImplementedError("SlotLayer lives only inside the Decoder")

    batch_repeat_interleave = batch_select_indices = crop
