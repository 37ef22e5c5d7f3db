"""Keep change subscriptions alive as long as their Doc.

pycrdt drops a subscription when the shared-type object it was made on is collected, so a
callback registered through a short-lived view (`RunHistory(doc).on_change(cb)`) would stop
firing at the next garbage collection. The shared type is kept here, per Doc, until unsubscribed.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from pycrdt import Doc

_kept: weakref.WeakKeyDictionary[Doc, list[tuple[Any, Any]]] = weakref.WeakKeyDictionary()


def keep(doc: Doc, shared: Any, subscription: Any) -> Callable[[], None]:
    """Hold `shared` (an Array, Text...) and its subscription; returns the unsubscribe."""
    entry = (shared, subscription)
    _kept.setdefault(doc, []).append(entry)

    def unsubscribe() -> None:
        held = _kept.get(doc, [])
        if entry in held:
            held.remove(entry)
            shared.unobserve(subscription)

    return unsubscribe
