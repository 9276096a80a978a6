"""What a user's date and outlet filters let through, and the message when they let nothing through.

A filter that excludes every indexed article would otherwise answer a plain "not found" that hides
the cause; `check_filters_admit_some` says which part of the filter did it, and what the index holds.
"""

from __future__ import annotations

from collections.abc import Iterable

from index.errors import HoidapError
from retrieval.types import SearchFilters

DatedSource = tuple[str | None, str | None]
"""An article as the filters see it: its ISO date (or None) and its outlet (or None)."""


class FiltersExcludeEverythingError(HoidapError):
    """The date range or outlets asked for match no indexed article."""


def is_empty(filters: SearchFilters | None) -> bool:
    return filters is None or (filters.date_from is None and filters.date_to is None and not filters.sources)


def admits_date(filters: SearchFilters, date: str | None) -> bool:
    """Whether an article dated `date` (None: undated) is within the filter's dates (inclusive)."""
    if filters.date_from is None and filters.date_to is None:
        return True
    if date is None:
        return False
    day = date[:10]
    return (filters.date_from is None or day >= filters.date_from) and (filters.date_to is None or day <= filters.date_to)


def admits_source(filters: SearchFilters, source: str | None) -> bool:
    """Whether an article from `source` is among the filter's outlets (compared case-insensitively)."""
    if not filters.sources:
        return True
    return source is not None and source.casefold() in {wanted.casefold() for wanted in filters.sources}


def admits(filters: SearchFilters, date: str | None, source: str | None) -> bool:
    return admits_date(filters, date) and admits_source(filters, source)


def check_filters_admit_some(filters: SearchFilters | None, articles: Iterable[DatedSource]) -> None:
    """Raise `FiltersExcludeEverythingError` when no article passes `filters`, naming the part at fault."""
    if is_empty(filters):
        return
    assert filters is not None
    articles = list(articles)
    if any(admits(filters, date, source) for date, source in articles):
        return
    outlets = sorted({source for _, source in articles if source})
    from_outlets = [(date, source) for date, source in articles if admits_source(filters, source)]
    wanted = ", ".join(filters.sources)
    if filters.sources and not from_outlets:
        known_en = ", ".join(outlets) if outlets else "none has an outlet"
        known_vi = ", ".join(outlets) if outlets else "không bài nào ghi nguồn"
        raise FiltersExcludeEverythingError(
            f"No indexed article is from {wanted} (outlets in the index: {known_en}).",
            vi=f"Không có bài nào của {wanted} trong chỉ mục (các nguồn có: {known_vi}).")
    dates = sorted(date[:10] for date, _ in from_outlets if date)
    held_en = f"their dates run from {dates[0]} to {dates[-1]}" if dates else "none of them is dated"
    held_vi = f"các bài có ngày từ {dates[0]} đến {dates[-1]}" if dates else "không bài nào có ngày"
    span_en, span_vi = _date_span(filters)
    if filters.sources:
        raise FiltersExcludeEverythingError(f"No article from {wanted} {span_en} ({held_en}).",
                                            vi=f"Không có bài nào của {wanted} {span_vi} ({held_vi}).")
    raise FiltersExcludeEverythingError(f"No indexed article {span_en} ({held_en}).",
                                        vi=f"Không có bài nào {span_vi} ({held_vi}).")


def _date_span(filters: SearchFilters) -> tuple[str, str]:
    """`between A and B` / `từ A đến B`, or the one open end."""
    if filters.date_from and filters.date_to:
        return f"between {filters.date_from} and {filters.date_to}", f"từ {filters.date_from} đến {filters.date_to}"
    if filters.date_from:
        return f"dated {filters.date_from} or later", f"từ {filters.date_from} trở đi"
    return f"dated {filters.date_to} or earlier", f"đến hết {filters.date_to}"
