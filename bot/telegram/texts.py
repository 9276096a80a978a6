"""What the bot says besides answers, in Vietnamese, as Telegram HTML (every dynamic part escaped)."""

from __future__ import annotations

from bot.telegram.formatting import escape

COMMANDS: list[tuple[str, str]] = [
    ("start", "Giới thiệu bot và cách đặt câu hỏi"),
    ("help", "Hướng dẫn sử dụng"),
    ("sources", "Danh sách bài báo bot đã đọc"),
    ("new", "Bắt đầu cuộc trò chuyện mới"),
    ("ask", "Đặt câu hỏi (dùng trong nhóm)"),
]
"""Registered with setMyCommands: (command, description shown in Telegram's menu)."""


def greeting(n_articles: int, bot_username: str | None) -> str:
    """`/start`: what the bot knows and how to ask."""
    mention = f"@{escape(bot_username)}" if bot_username else "tên bot"
    known = (f"<b>{n_articles}</b> bài báo đã được lập chỉ mục" if n_articles
             else "các bài báo được lập chỉ mục (hiện chưa có bài nào)")
    return (
        "Xin chào! Mình là <b>hoidap</b>, trợ lý hỏi đáp dựa trên tin tức.\n\n"
        f"Mình chỉ trả lời từ {known}, và mỗi câu trả lời đều kèm trích dẫn <b>[n]</b> "
        "tới đoạn báo gốc (tiêu đề, ngày đăng, đoạn trích). Nếu các bài báo không nói đến, "
        "mình sẽ nói thẳng là không tìm thấy.\n\n"
        "<b>Cách hỏi:</b> cứ gửi câu hỏi bằng tiếng Việt (có dấu hoặc không dấu), ví dụ:\n"
        "<i>Bí thư Tỉnh ủy Tiền Giang làm việc với đơn vị nào?</i>\n"
        "Bạn có thể hỏi tiếp dựa trên câu trước; /new để bắt đầu lại.\n\n"
        f"Trong nhóm: nhắc {mention}, trả lời tin nhắn của mình, hoặc dùng /ask câu hỏi.\n"
        "Xem danh sách bài báo: /sources — trợ giúp: /help"
    )


def help_text(bot_username: str | None, max_input_chars: int, rate_limit: int) -> str:
    """`/help`: commands, groups, buttons and limits."""
    mention = f"@{escape(bot_username)}" if bot_username else "tên bot"
    return (
        "<b>Hướng dẫn</b>\n"
        "• Gửi một câu hỏi: mình tìm trong các bài báo và trả lời kèm nguồn [n].\n"
        "• Nút <b>📖 Đoạn trích</b> mở toàn văn các đoạn được trích dẫn; 👍 / 👎 giúp mình cải thiện.\n"
        "• /sources — danh sách bài báo; /new — quên cuộc trò chuyện hiện tại.\n"
        f"• Trong nhóm: nhắc {mention}, trả lời tin nhắn của mình, hoặc /ask câu hỏi.\n"
        f"• Giới hạn: {max_input_chars} ký tự mỗi câu hỏi, {rate_limit} câu hỏi mỗi phút.\n"
        "• Mình chỉ đọc chữ: ảnh, sticker hay tin nhắn thoại sẽ không được xử lý."
    )


NEW_CONVERSATION = "Đã bắt đầu cuộc trò chuyện mới: mình không còn dựa vào các câu hỏi trước."
REFUSAL = ("Xin lỗi, bot này chỉ dành cho một số người dùng và nhóm được cho phép. "
           "Hãy liên hệ người quản lý bot nếu bạn cần dùng.")
TEXT_ONLY = "Mình chỉ đọc được tin nhắn chữ. Hãy gõ câu hỏi của bạn nhé."
ASK_USAGE = "Hãy viết câu hỏi sau lệnh, ví dụ: <code>/ask Ai là Bí thư Tỉnh ủy Tiền Giang?</code>"
EMPTY_QUESTION = "Bạn muốn hỏi gì? Hãy gõ câu hỏi sau khi nhắc tên mình."
ERROR = "Xin lỗi, đã có lỗi khi xử lý tin nhắn này. Bạn hãy thử lại sau ít phút."
ANSWER_GONE = "Câu trả lời này không còn được lưu."
THANKS_UP = "Cảm ơn bạn! 👍 đã được ghi nhận."
THANKS_DOWN = "Cảm ơn bạn! 👎 đã được ghi nhận, mình sẽ xem lại câu trả lời này."
EDITED_NOTICE = "Trả lời cho câu hỏi đã sửa"
SOURCES_BUTTON = "📖 Đoạn trích"
THINKING = "Đang tìm trong các bài báo…"


def rate_limited(limit: int, retry_in: int) -> str:
    return (f"Bạn đang hỏi hơi nhanh: tối đa {limit} câu hỏi mỗi phút. "
            f"Hãy thử lại sau {retry_in} giây nhé.")


def input_cut(max_chars: int) -> str:
    return f"Câu hỏi dài hơn {max_chars} ký tự nên chỉ phần đầu được dùng."

CORRECTION_PROMPT = ("Câu trả lời đúng là gì? Hãy trả lời tin nhắn này bằng một dòng, "
                     "mình sẽ lưu lại để người quản lý sửa.")
CORRECTION_PLACEHOLDER = "Câu trả lời đúng là…"
CORRECTION_THANKS = "Cảm ơn bạn! Mình đã lưu câu trả lời đúng để người quản lý xem lại."
INLINE_REFUSAL = "Bot này chỉ dành cho người được cho phép"
INLINE_HINT = "Gõ một câu hỏi về tin tức…"
INLINE_STILL_LOOKING = "Đang tìm câu trả lời… gõ thêm một dấu cách để xem"
INLINE_START = "inline"
"""The /start parameter of the inline buttons (they open a private chat with the bot)."""


def inline_rate_limited(retry_in: int) -> str:
    return f"Bạn hỏi hơi nhanh: thử lại sau {retry_in} giây"
