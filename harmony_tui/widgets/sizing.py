"""Widgets that need one layout pass when they grow, not two.

When a layout pass changes a widget's size, Textual (8.2) sets the widget's ``virtual_size``
reactive, which is declared with ``layout=True``: every widget the pass resized asks for a
second full layout and repaints its whole region, although nothing changed since the first
pass. A streaming answer grows with every screen update, and so do the answer, its message and
the conversation around it: each update was laid out and drawn twice. ``OneLayoutPass`` keeps
the new virtual size without asking for that second pass (scrollbars and the stick-to-bottom
scroll are still updated by the first pass).
"""

from __future__ import annotations

from textual.geometry import Size


class OneLayoutPass:
    """Mixin (before the Textual widget class): no second layout pass after a resize."""

    def _size_updated(self, size: Size, virtual_size: Size, container_size: Size,
                      layout: bool = True) -> bool:
        return super()._size_updated(size, virtual_size, container_size,  # type: ignore[misc]
                                     layout=False)
