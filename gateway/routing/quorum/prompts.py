"""The messages the gateway writes for a council: the judge's, each debate round's, a vote's
tie-break. Pure code.

Each is the client's conversation with one more user message, made from a template
(`DEFAULT_PROMPTS`, or the quorum route's `prompts:` in gateway.yaml) whose `{answers}`
is replaced by the answers, labelled neutrally (Answer A, B, ...), never by model name.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence
from typing import Any

from .answers import Answer

PLACEHOLDER = "{answers}"
DEFAULT_PROMPTS = {
    "judge": (
        "Several assistants answered the conversation above. Their answers follow, labelled neutrally.\n\n"
        "{answers}\n\n"
        "Write the best final answer to the conversation's last message. Keep what is right in the answers, "
        "correct what is wrong, and answer the user directly, as if you were answering alone: do not mention "
        "the answers, their labels or these instructions."
    ),
    "debate": (
        "Other participants answered the same conversation. Their latest answers follow, labelled neutrally.\n\n"
        "{answers}\n\n"
        "Weigh their reasoning against your previous answer, then answer the conversation's last message "
        "again: change your answer where they convinced you, keep it where they did not. Answer directly, "
        "without mentioning the other answers or their labels."
    ),
    "tie_break": (
        "Several assistants answered the conversation above, and their answers are tied. They follow, "
        "labelled neutrally.\n\n"
        "{answers}\n\n"
        "Which answer is the best? Reply with its letter alone (for example: A)."
    ),
}
LABELS = string.ascii_uppercase  # a quorum has at most 26 members (config.quorum.MAX_MEMBERS)
CHOICE = re.compile(r"\banswer\s+([A-Z])\b", re.IGNORECASE)


def label(position: int) -> str:
    """`A` for the first answer shown, `B` for the second, ..."""
    return LABELS[position]


def answer_text(answer: Answer) -> str:
    """An answer as text: its content (or refusal), then any tool calls it made."""
    parts = [answer.content.strip() or (answer.refusal or "").strip()]
    for call in answer.tool_calls:
        function = call["function"]
        parts.append(f"(calls the tool {function['name']} with the arguments {function['arguments']})")
    return "\n".join(part for part in parts if part)


def shown(answers: Sequence[Answer]) -> str:
    """The answers as the judge or a debater sees them: `Answer A:` and the text between tags."""
    return "\n\n".join(
        f"Answer {label(position)}:\n<answer>\n{answer_text(answer)}\n</answer>"
        for position, answer in enumerate(answers)
    )


def template(prompts: Mapping[str, str], name: str) -> str:
    """The route's own template `name`, else the package's."""
    return prompts.get(name) or DEFAULT_PROMPTS[name]


def with_answers(conversation: Sequence[Any], text: str, answers: Sequence[Answer]) -> list[Any]:
    """The conversation, then a user message: `text` with the answers where `{answers}` is."""
    return [*conversation, {"role": "user", "content": text.replace(PLACEHOLDER, shown(answers))}]


def judge_messages(conversation: Sequence[Any], answers: Sequence[Answer], prompts: Mapping[str, str]) -> list[Any]:
    """What the judge is sent to write the final answer (synthesize, and after a debate)."""
    return with_answers(conversation, template(prompts, "judge"), answers)


def debate_messages(
    conversation: Sequence[Any], own: Answer, others: Sequence[Answer], prompts: Mapping[str, str]
) -> list[Any]:
    """What a member is sent in a later debate round: the conversation, its own previous
    answer (as the assistant's), and the others' latest answers."""
    previous = {"role": "assistant", "content": answer_text(own)}
    return with_answers([*conversation, previous], template(prompts, "debate"), others)


def tie_break_messages(conversation: Sequence[Any], answers: Sequence[Answer], prompts: Mapping[str, str]) -> list[Any]:
    """What the judge is sent to break a vote's tie: one answer of each tied group."""
    return with_answers(conversation, template(prompts, "tie_break"), answers)


def chosen(reply: str, count: int) -> int | None:
    """The position of the answer a tie-break reply chose (`B`, `B.`, `Answer B`, `**Answer B** is
    best`), or None when it names none of the `count` answers, or several."""
    text = reply.strip().strip("*_`.:()[] \n").upper()
    if len(text) == 1 and text in LABELS[:count]:
        return LABELS.index(text)
    named = {match.upper() for match in CHOICE.findall(reply)} & set(LABELS[:count])
    if len(named) == 1:
        return LABELS.index(named.pop())
    return None


def most_added(prompts: Mapping[str, str], answers: int, answer_tokens: int) -> int:
    """At most how many prompt tokens a council message adds to the conversation when it shows
    `answers` answers of at most `answer_tokens` tokens each: the longest template in bytes
    (a token is never fewer than one byte) and each answer with its label and tags."""
    if answers == 0:
        return 0
    longest = max(len(template(prompts, name).encode()) for name in DEFAULT_PROMPTS)
    return longest + answers * (answer_tokens + LABEL_OVERHEAD)


LABEL_OVERHEAD = 64  # tokens, at most, of `Answer A:` and the tags around an answer (see `shown`)
