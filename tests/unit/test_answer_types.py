"""Evidence of the asked kind of value in real sentences of the bundled articles and of XQuAD-vi."""

from __future__ import annotations

from retrieval.answering.answer_types import (
    Words,
    count_positions,
    counted_unit,
    labelled_positions,
    name_runs,
    new_name_positions,
    person_positions,
    place_positions,
    time_positions,
)

DIRECTIVES = (
    "Để khắc phục những hạn chế đó, đồng chí Trương Quang Tưởng - Tỉnh ủy viên, Bí thư Đảng ủy Khối các cơ "
    "quan tỉnh, cho biết: Đảng ủy đã tập trung chỉ đạo các tổ chức cơ sở đảng trực thuộc nghiêm túc thực hiện "
    "Chỉ thị 17 của Tỉnh ủy về phát huy dân chủ, tăng cường kỷ luật, kỷ cương, nâng cao tinh thần trách nhiệm "
    "phục vụ nhân dân của cán bộ, đảng viên và Quyết định 20 của UBND tỉnh về chấn chỉnh kỷ luật."
)
MEMBERS_2016 = "Số lượng đảng viên đông (gần 3.500 đảng viên) với nhiều loại hình tổ chức cơ sở đảng khác nhau."
MEMBERS_2023 = "513 đồng chí, nâng tổng số đảng viên toàn Đảng bộ tỉnh lên 74.127 đồng chí."
CHAIR = "Đồng chí Nguyễn Minh Tiến, Ủy viên BTV tỉnh ủy, Trưởng ban Tổ chức tỉnh ủy chủ trì hội nghị."
MEETING = ("Sáng ngày 29/9, Ban Tổ chức Tỉnh ủy đã tổ chức Hội nghị sơ kết công tác xây dựng Đảng 9 tháng đầu "
           "năm, triển khai nhiệm vụ 3 tháng cuối năm 2023.")


def _counts(text: str, excluded: tuple[str, ...] = ()) -> list[str]:
    words = Words.of(text)
    return [words.cased[i] for i in count_positions(words, text, excluded)]


def test_labels_and_dates_are_not_counts() -> None:
    # "Chỉ thị 17" and "Quyết định 20" name documents; "ngày 29/9" and "năm 2023" are times.
    assert _counts(DIRECTIVES) == []
    assert _counts(MEETING) == ["3"]
    assert _counts(MEMBERS_2016) == ["3.500"]
    assert _counts("Tổng số đảng viên năm 2023 là 74.127", excluded=("2023",)) == ["74.127"]


def test_a_count_just_before_the_unit_is_the_plainest() -> None:
    words = Words.of(MEMBERS_2016)
    assert counted_unit(words, count_positions(words, MEMBERS_2016, ()), ("dang", "vien")) == 2
    words = Words.of(MEMBERS_2023)
    # "tổng số đảng viên toàn Đảng bộ tỉnh lên 74.127": the unit comes first, in the same clause.
    assert counted_unit(words, count_positions(words, MEMBERS_2023, ()), ("dang", "vien")) == 1
    words = Words.of(DIRECTIVES)
    assert counted_unit(words, count_positions(words, DIRECTIVES, ()), ("dang", "vien")) == 0


def test_times_are_years_dates_and_spans_back() -> None:
    costa = ("Trong vụ án lớn đầu tiên vào năm 1964, Costa v ENEL, một luật sư người Milan, và là cựu cổ đông "
             "của công ty năng lượng, tên là Costa đã từ chối trả hóa đơn tiền điện cho Enel.")
    words = Words.of(costa)
    assert [words.cased[i] for i in time_positions(words, costa, (), years_only=True)] == ["1964"]
    extinction = "Sự kiện tuyệt chủng xảy ra khoảng 66 triệu năm trước."
    words = Words.of(extinction)
    assert [words.cased[i] for i in time_positions(words, extinction, (), years_only=False)] == ["66"]
    words = Words.of(MEETING)
    found = [words.cased[i] for i in time_positions(words, MEETING, ("2023",), years_only=False)]
    assert found == ["29", "9"]  # the day and month of "29/9"; "9 tháng" counts months
    assert time_positions(words, MEETING, ("2023",), years_only=True) == []


def test_person_names_are_new_to_the_question() -> None:
    words = Words.of(CHAIR)
    assert [words.cased[i] for i in person_positions(words, {"chu", "tri", "hoi", "nghi"})] == ["Nguyễn"]
    assert person_positions(words, {"nguyen", "minh", "tien"}) == []
    # A name after a title is a person's whatever its language.
    hobson = "Phần đa tranh luận được đưa ra đầu tiên bởi ông Hobson."
    words = Words.of(hobson)
    assert [words.cased[i] for i in person_positions(words, set())] == ["Hobson"]


def test_a_capital_that_opens_the_sentence_is_no_name() -> None:
    words = Words.of("Sau Thế Chiến II, chính quyền thành phố Jacksonville bắt đầu tăng chi tiêu.")
    assert [" ".join(words.cased[a:b]) for a, b in name_runs(words)] == ["Thế Chiến II", "Jacksonville"]
    assert [words.cased[i] for i in new_name_positions(words, {"jacksonville"})] == ["Thế"]
    words = Words.of(CHAIR)
    assert [" ".join(words.cased[a:b]) for a, b in name_runs(words)][0] == "Nguyễn Minh Tiến"


def test_places_follow_place_words() -> None:
    krakow = "Nhưng ví dụ các quận ở Kraków không có quyền của powiat."
    words = Words.of(krakow)
    assert [words.cased[i] for i in place_positions(words, {"quan"})] == ["Kraków"]
    words = Words.of(CHAIR)
    assert place_positions(words, set()) == []


def test_which_noun_followed_by_a_label() -> None:
    words = Words.of(DIRECTIVES)
    assert [words.cased[i] for i in labelled_positions(words, ("chi", "thi"), {"chi", "thi"})] == ["17"]
    lowry = "Dữ liệu được giao cho công ty Lowry Digital để phục hồi."
    words = Words.of(lowry)
    assert [words.cased[i] for i in labelled_positions(words, ("cong", "ty"), {"cong", "ty"})] == ["Lowry"]
