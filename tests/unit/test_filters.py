"""The date and outlet filter rule, and the message when a filter lets no article through."""

from __future__ import annotations

import pytest

from retrieval.search.filters import FiltersExcludeEverythingError, admits, check_filters_admit_some
from retrieval.types import SearchFilters

ARTICLES = [("2016-06-11", "Báo Quảng Ngãi"), ("2014-10-29T08:00", "THTG"), ("2023-09-29", None), (None, "THTG")]


def test_dates_are_inclusive_and_outlets_case_insensitive() -> None:
    window = SearchFilters(date_from="2016-06-11", date_to="2016-06-11", sources=("báo quảng ngãi",))
    assert admits(window, "2016-06-11", "Báo Quảng Ngãi")
    assert not admits(window, "2016-06-12", "Báo Quảng Ngãi")
    assert not admits(window, "2016-06-11", "THTG")
    assert not admits(SearchFilters(date_from="2000-01-01"), None, "THTG")  # an undated article is outside any range
    assert admits(SearchFilters(sources=("thtg",)), None, "THTG")


def test_a_filter_that_admits_one_article_passes() -> None:
    check_filters_admit_some(SearchFilters(date_to="2014-10-29"), ARTICLES)
    check_filters_admit_some(None, [])


@pytest.mark.parametrize(("filters", "english", "vietnamese"), [
    (SearchFilters(sources=("VnExpress",)), "No indexed article is from VnExpress (outlets in the index: Báo Quảng Ngãi, THTG).",
     "Không có bài nào của VnExpress trong chỉ mục (các nguồn có: Báo Quảng Ngãi, THTG)."),
    (SearchFilters(date_to="2000-01-01"), "No indexed article dated 2000-01-01 or earlier (their dates run from 2014-10-29 to 2023-09-29).",
     "Không có bài nào đến hết 2000-01-01 (các bài có ngày từ 2014-10-29 đến 2023-09-29)."),
    (SearchFilters(date_from="2015-01-01", sources=("THTG",)),
     "No article from THTG dated 2015-01-01 or later (their dates run from 2014-10-29 to 2014-10-29).",
     "Không có bài nào của THTG từ 2015-01-01 trở đi (các bài có ngày từ 2014-10-29 đến 2014-10-29)."),
])
def test_a_filter_that_admits_nothing_says_which_part_did_it(filters: SearchFilters, english: str, vietnamese: str) -> None:
    with pytest.raises(FiltersExcludeEverythingError) as caught:
        check_filters_admit_some(filters, ARTICLES)
    assert str(caught.value) == english and caught.value.in_language("vi") == vietnamese
