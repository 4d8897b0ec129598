"""Type stubs for the optional C module built from ``_speedups.c``."""

from typing import Any

def set_event_type(cls: type, /) -> None: ...
def configure(
    ladder: type,
    book: type,
    key_list: type,
    decimal: type,
    price_cache_limit: int,
    dead_slack: int,
    remembered_depth: int,
    /,
) -> None: ...
def depth_frame(raw: object, /) -> Any: ...
def apply_delta(book: object, event: object, /) -> bool | None: ...
def view(ladder: object, n: int | None, /) -> list[Any] | None: ...
