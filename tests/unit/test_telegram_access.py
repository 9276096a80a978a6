"""Who the bot answers and how often: allowlist, rate limit, input cap, group addressing."""

from __future__ import annotations

import datetime as dtm

from telegram import Chat, Message, MessageEntity, User

from bot.telegram.access import AccessPolicy, RateWindow, admit, truncate_input
from bot.telegram.handlers import addressed_question, answer_keyboard, command_argument

BOT = User(id=42, is_bot=True, first_name="Hỏi đáp", username="hoidap_bot")
LAN = User(id=7, is_bot=False, first_name="Lan")
NOW = dtm.datetime(2024, 5, 1, tzinfo=dtm.timezone.utc)


def message(text: str, chat_type: str = Chat.GROUP, *, entities: list[MessageEntity] | None = None,
            reply_to: Message | None = None) -> Message:
    chat = Chat(id=7 if chat_type == Chat.PRIVATE else -100, type=chat_type)
    return Message(message_id=1, date=NOW, chat=chat, from_user=LAN, text=text, entities=entities or [],
                   reply_to_message=reply_to)


def mention(text: str, handle: str) -> MessageEntity:
    offset = len(text[: text.index(handle)].encode("utf-16-le")) // 2
    return MessageEntity(MessageEntity.MENTION, offset, len(handle.encode("utf-16-le")) // 2)


def test_open_policy_allows_everyone() -> None:
    assert AccessPolicy.from_ids().allows(1, 1)


def test_allowlist_by_user_or_by_chat() -> None:
    policy = AccessPolicy.from_ids(users=[7], chats=[-100])
    assert policy.allows(7, 7)  # an allowed user in a private chat
    assert policy.allows(7, -555)  # and anywhere else
    assert policy.allows(8, -100)  # anyone in an allowed group
    assert not policy.allows(8, 8) and not policy.allows(None, None)


def test_rate_rule_slides_and_tells_once_per_wait() -> None:
    """The rule alone (`admit`); its storage, shared by replicas, is tested in test_telegram_state."""
    window, allowed = RateWindow(), []
    for t in (0.0, 5.0, 8.0):
        window, decision = admit(window, t, 3, 60)
        allowed.append(decision.allowed)
    assert allowed == [True, True, True] and window.asked == (0.0, 5.0, 8.0)
    window, refused = admit(window, 10, 3, 60)
    assert (refused.allowed, refused.retry_in, refused.notify) == (False, 50, True)
    window, waiting = admit(window, 20, 3, 60)
    assert (waiting.allowed, waiting.notify) == (False, False)  # same wait: no second notice
    window, freed = admit(window, 60.5, 3, 60)
    assert freed.allowed and window.asked == (5.0, 8.0, 60.5)  # the first question left the window
    window, again = admit(window, 60.6, 3, 60)
    assert (again.allowed, again.retry_in, again.notify) == (False, 5, True)  # free at 65 s: a new wait


def test_truncate_input_cuts_at_a_word() -> None:
    assert truncate_input("  Ai là Bí thư?  ", 100) == ("Ai là Bí thư?", False)
    assert truncate_input("Đoàn công tác Tỉnh ủy làm việc với Ban Thường vụ", 20) == ("Đoàn công tác Tỉnh", True)
    assert truncate_input("x" * 50, 20) == ("x" * 20, True)


def test_private_chat_every_text_is_a_question() -> None:
    assert addressed_question(message("Ai là Bí thư?", Chat.PRIVATE), BOT.id, BOT.username) == "Ai là Bí thư?"


def test_group_needs_a_mention_or_a_reply() -> None:
    assert addressed_question(message("Chiều nay họp không?"), BOT.id, BOT.username) is None
    text = "Cho hỏi @hoidap_bot: Ai là Bí thư?"
    assert addressed_question(message(text, entities=[mention(text, "@hoidap_bot")]), BOT.id, BOT.username) == \
        "Cho hỏi : Ai là Bí thư?"
    text = "@HoiDap_Bot 😀 Ai là Bí thư?"  # usernames are case-insensitive; offsets are UTF-16
    assert addressed_question(message(text, entities=[mention(text, "@HoiDap_Bot")]), BOT.id, BOT.username) == \
        "😀 Ai là Bí thư?"
    other = "@someone_else Ai là Bí thư?"
    assert addressed_question(message(other, entities=[mention(other, "@someone_else")]), BOT.id,
                              BOT.username) is None
    ours = Message(message_id=9, date=NOW, chat=Chat(-100, Chat.GROUP), from_user=BOT, text="Câu trả lời [1]")
    assert addressed_question(message("Vào ngày nào?", reply_to=ours), BOT.id, BOT.username) == "Vào ngày nào?"
    theirs = Message(message_id=9, date=NOW, chat=Chat(-100, Chat.GROUP), from_user=LAN, text="hi")
    assert addressed_question(message("Vào ngày nào?", reply_to=theirs), BOT.id, BOT.username) is None
    text_mention = MessageEntity(MessageEntity.TEXT_MENTION, 0, 7, user=BOT)
    assert addressed_question(message("Hỏi đáp ơi, ai chủ trì?", entities=[text_mention]), BOT.id,
                              BOT.username) == "Hỏi đáp ơi, ai chủ trì?"


def test_command_argument_keeps_the_question() -> None:
    assert command_argument("/ask@hoidap_bot Ai là\nBí thư?") == "Ai là\nBí thư?"
    assert command_argument("/ask") == ""


def test_answer_keyboard_fits_telegram_callback_data() -> None:
    keyboard = answer_keyboard(123456789, with_sources=True, chosen=-1)
    buttons = [button for row in keyboard.inline_keyboard for button in row]
    assert [b.callback_data for b in buttons] == ["src:123456789", "vote:123456789:up", "vote:123456789:down"]
    assert buttons[2].text == "👎 ✓" and all(len(b.callback_data.encode()) <= 64 for b in buttons)
    assert len(answer_keyboard(1, with_sources=False).inline_keyboard) == 1


def test_every_configured_secret_is_redacted_from_log_records() -> None:
    import logging

    from bot.settings import Settings
    from bot.telegram.app import SecretRedactor, configured_secrets

    settings = Settings(_env_file=None, telegram_token="123:AAE-secretPart", telegram_webhook_secret="hook-Secret",
                        openai_api_key="sk-key-1")
    redactor = SecretRedactor(*configured_secrets(settings))
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "url bot%s, half %s, hook %s, key %s", None, None)
    record.args = ("123:AAE-secretPart", "AAE-secretPart", "hook-Secret", "Bearer sk-key-1")
    redactor.filter(record)
    assert record.getMessage() == "url bot<redacted>, half <redacted>, hook <redacted>, key Bearer <redacted>"
    assert configured_secrets(Settings(_env_file=None)) == []
