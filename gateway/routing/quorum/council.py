"""A quorum route's council: who is asked what, and when; which calls are stopped; which
answer is final. The calls themselves are the caller's (`MemberCall`: api.council sends
each through its member's route), so this is pure orchestration on the event loop.

    fastest     ask the first member; each `hedge_after` seconds in which no answer has begun,
                ask the next (at once when every call in flight has failed); the first answer
                to begin wins and is the verdict, as it streams; the other calls are stopped
    vote        every member answers; the largest group of equal answers (combine) wins, a tie
                going to the judge if there is one, else to the earliest member; the verdict is
                the winning group's first member's answer
    synthesize  every member answers; the judge answers from the conversation and their answers
    debate      round 1, every member answers alone; then each answers again having seen the
                others' latest answers, until `rounds` or until every answer is the same; the
                judge answers from the last round

A member that fails (or answers nothing) is left out, and is not asked again in a later
round; fewer usable answers than `min_answers` in any round fails the council
(QuorumNotReached). The caller bounds the whole council with the route's timeout and
cancels it when the client goes away: every call in flight is cancelled with it.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ...config import Quorum
from ...errors import EmptyAnswer, GatewayError, Outrun, QuorumNotReached
from .answers import JUDGE, Answer, total_usage
from .combine import agreed, grouped, leaders
from .events import MemberDelta, MemberDone, MemberFailed, Observer, RoundBegins, VerdictDelta
from .prompts import chosen, debate_messages, judge_messages, tie_break_messages


class MemberCall(Protocol):
    async def __call__(
        self,
        answer: Answer,
        messages: list[Any],
        *,
        begun: Callable[[], bool],
        delta: Callable[[dict[str, Any]], None],
        plain: bool,
    ) -> None:
        """Ask the route `answer.member` with the client's request, its messages replaced by
        `messages` (`plain`: without its tools and response format), and fill `answer` in:
        provider, model, each delta (`answer.add`, then `delta(it)`), finish_reason, usage,
        duration_ms, or `failure`.

        `begun()` is called once, when the answer begins (its first content, refusal, tool
        call or finish reason), before its first delta; when it returns False the call
        stops at once (its upstream closed). Raises only CancelledError: every failure of
        the call is in `answer.failure`.
        """
        ...


@dataclass(slots=True)
class Verdict:
    """What a council did, and its final answer."""

    strategy: str
    members: tuple[str, ...]
    rounds: list[list[Answer]]  # the answers of each round, in the members' order
    final: Answer  # what the client gets: the judge's answer, or the winning member's
    judge: Answer | None = None
    votes: dict[str, list[str]] | None = None  # vote: members by normalised answer
    agreed: bool | None = None  # whether the last round's answers were all the same; None: fastest

    @property
    def calls(self) -> list[Answer]:
        """Every call made, the judge's last."""
        calls = [answer for round_ in self.rounds for answer in round_]
        return [*calls, self.judge] if self.judge is not None else calls

    @property
    def left_out(self) -> list[Answer]:
        """The members' answers that failed (not those stopped because another began first)."""
        return [answer for answer in self.calls[: None if self.judge is None else -1] if left_out(answer) is not None]

    def usage(self) -> dict[str, int]:
        """OpenAI's counts summed over every call: members in every round, and the judge."""
        return total_usage(answer.usage for answer in self.calls)

    def report(self) -> dict[str, Any]:
        """The `quorum` field of the client's answer."""
        return {
            "strategy": self.strategy,
            "members": list(self.members),
            "rounds": [[answer.entry() for answer in round_] for round_ in self.rounds],
            "votes": self.votes,
            "judge": self.judge.entry() if self.judge is not None else None,
            "left_out": [
                {"member": answer.member, "round": answer.round, "error": answer.error} for answer in self.left_out
            ],
        }


def possible_calls(quorum: Quorum) -> list[tuple[str, int]]:
    """Every call the council may make, as (route, answers shown to it): the most it can
    cost (api.spending holds that much of a budget). A debate's members see the others'
    answers from round 2 (and its own, counted as one more); the judge sees every member's (a
    vote's judge only on a tie)."""
    members = len(quorum.members)
    calls = [(member, 0) for member in quorum.members]
    if quorum.strategy == "debate":
        calls += [(member, members) for _ in range(quorum.rounds - 1) for member in quorum.members]
    if quorum.judge is not None and quorum.strategy != "fastest":
        calls.append((quorum.judge, members))
    return calls


def left_out(answer: Answer) -> GatewayError | None:
    """The failure an answer was left out for; None when it is usable or was only outrun."""
    return None if isinstance(answer.failure, Outrun) else answer.failure


class Council:
    """One run of a quorum route's council; `emit` hears every event as it happens."""

    def __init__(self, quorum: Quorum, call: MemberCall, emit: Observer) -> None:
        self.quorum = quorum
        self.call = call
        self.emit = emit
        self.judging = False  # the judge was asked for the final answer: a failure from here is the judge's
        self._done: list[Answer] = []  # the answers whose member.done or member.error was emitted

    async def run(self, conversation: list[Any]) -> Verdict:
        """The verdict on the conversation (the client's messages). Raises QuorumNotReached, or
        the judge's error (its message saying it was the judge's), or, for `fastest`, the
        winning member's when its answer failed after it began."""
        strategies: dict[str, Callable[[list[Any]], Awaitable[Verdict]]] = {
            "fastest": self.fastest,
            "vote": self.vote,
            "synthesize": self.synthesize,
            "debate": self.debate,
        }
        return await strategies[self.quorum.strategy](conversation)

    # -- strategies

    async def fastest(self, conversation: list[Any]) -> Verdict:
        self.emit(RoundBegins(1))
        answers: list[Answer] = []
        tasks: list[asyncio.Task[None]] = []
        first = asyncio.Event()
        winner: Answer | None = None

        def begun(answer: Answer) -> bool:
            nonlocal winner
            if winner is not None:  # began a moment after the winner, before its stop arrived
                answer.failure = Outrun(winner.member)
                return False
            winner = answer
            first.set()
            for other, task in zip(answers, tasks, strict=True):
                if other is not answer and not task.done():
                    other.failure = Outrun(answer.member)
                    task.cancel()  # its call closes its upstream connection as the cancellation unwinds
            return True

        def delta(answer: Answer, value: dict[str, Any]) -> None:
            self._member_delta(answer, value)
            self.emit(VerdictDelta(value))

        async def ask(answer: Answer) -> None:
            try:
                await self.call(
                    answer,
                    conversation,
                    begun=functools.partial(begun, answer),
                    delta=functools.partial(delta, answer),
                    plain=False,
                )
            except asyncio.CancelledError:
                if isinstance(answer.failure, Outrun):
                    self._settled(answer)
                raise
            self._settled(answer)

        try:
            for position, member in enumerate(self.quorum.members):
                answers.append(Answer(member, 1))
                tasks.append(asyncio.create_task(ask(answers[-1])))
                if position + 1 < len(self.quorum.members):
                    await until_begun(first, tasks, self.quorum.hedge_after)
                    if first.is_set():
                        break
            await until_begun(first, tasks, None)
            if winner is not None:
                await tasks[answers.index(winner)]
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for answer in answers:  # stopped before their task began to run
            if answer not in self._done:
                answer.failure = answer.failure or Outrun(winner.member if winner else "another member")
                self._settled(answer)
        if winner is None:
            self._check(1, answers)
        assert winner is not None, "with no answer begun, every call failed: _check raised"
        if winner.failure is not None:  # it failed after it began: the client's answer breaks off
            raise winner.failure
        return Verdict("fastest", self.quorum.members, [answers], winner)

    async def vote(self, conversation: list[Any]) -> Verdict:
        answers = await self._round(1, [(member, conversation) for member in self.quorum.members])
        groups = grouped([answer for answer in answers if answer.usable])
        tied = leaders(groups)
        key, judge = tied[0], None  # the groups come in the members' order: the first is the earliest member's
        if len(tied) > 1 and self.quorum.judge is not None:
            judge = Answer(self.quorum.judge, 1, role=JUDGE)
            messages = tie_break_messages(conversation, [groups[key][0] for key in tied], self.quorum.prompts)
            await self.call(judge, messages, begun=always, delta=ignore, plain=True)
            pick = chosen(judge.content, len(tied)) if judge.failure is None else None
            key = tied[pick] if pick is not None else tied[0]  # a judge that fails or names none: the earliest
        winner = groups[key][0]
        self.emit(VerdictDelta(winner.message_delta()))
        votes = {normalised: [answer.member for answer in group] for normalised, group in groups.items()}
        return Verdict("vote", self.quorum.members, [answers], winner, judge, votes, len(groups) == 1)

    async def synthesize(self, conversation: list[Any]) -> Verdict:
        answers = await self._round(1, [(member, conversation) for member in self.quorum.members])
        usable = [answer for answer in answers if answer.usable]
        judge = await self._judge(conversation, usable, 1)
        return Verdict("synthesize", self.quorum.members, [answers], judge, judge, agreed=agreed(usable))

    async def debate(self, conversation: list[Any]) -> Verdict:
        rounds = [await self._round(1, [(member, conversation) for member in self.quorum.members])]
        usable = [answer for answer in rounds[0] if answer.usable]
        while len(rounds) < self.quorum.rounds and not agreed(usable):
            seats = [
                (answer.member, debate_messages(conversation, answer, others(usable, answer), self.quorum.prompts))
                for answer in usable
            ]
            rounds.append(await self._round(len(rounds) + 1, seats))
            usable = [answer for answer in rounds[-1] if answer.usable]
        judge = await self._judge(conversation, usable, len(rounds))
        return Verdict("debate", self.quorum.members, rounds, judge, judge, agreed=agreed(usable))

    # -- the steps

    async def _round(self, number: int, seats: Sequence[tuple[str, list[Any]]]) -> list[Answer]:
        """Every seat's member asked its messages at once; their answers, in the seats' order."""
        self.emit(RoundBegins(number))
        answers = [Answer(member, number) for member, _ in seats]
        async with asyncio.TaskGroup() as group:
            for answer, (_, messages) in zip(answers, seats, strict=True):
                group.create_task(self._member(answer, messages))
        self._check(number, answers)
        return answers

    async def _member(self, answer: Answer, messages: list[Any]) -> None:
        delta = functools.partial(self._member_delta, answer)
        await self.call(answer, messages, begun=always, delta=delta, plain=False)
        self._settled(answer)

    async def _judge(self, conversation: list[Any], answers: list[Answer], round_: int) -> Answer:
        """The judge's final answer from `answers`, its deltas the verdict's as they come."""
        assert self.quorum.judge is not None, "synthesize and debate have a judge (checked at load)"
        self.judging = True
        judge = Answer(self.quorum.judge, round_, role=JUDGE)
        messages = judge_messages(conversation, answers, self.quorum.prompts)
        await self.call(judge, messages, begun=always, delta=lambda value: self.emit(VerdictDelta(value)), plain=False)
        if judge.failure is None and not judge.usable:
            judge.failure = EmptyAnswer()
        if judge.failure is not None:
            judge.failure.message = f"The judge {judge.member!r} failed: {judge.failure.message}"
            raise judge.failure
        return judge

    def _member_delta(self, answer: Answer, value: dict[str, Any]) -> None:
        content = value.get("content")
        if content:
            self.emit(MemberDelta(answer.round, answer.member, content))

    def _settled(self, answer: Answer) -> None:
        """Emit the end of a member's answer: member.done, or member.error when it failed,
        or answered nothing (then it fails with EmptyAnswer)."""
        if answer.failure is None and not answer.usable:
            answer.failure = EmptyAnswer()
        self._done.append(answer)
        error = answer.error
        if error is None:
            self.emit(MemberDone(answer.round, answer.member, answer.finish_reason, answer.usage))
        else:
            self.emit(MemberFailed(answer.round, answer.member, error))

    def _check(self, number: int, answers: list[Answer]) -> None:
        """Raise QuorumNotReached, naming each failure, when fewer than min_answers are usable."""
        usable = sum(answer.usable for answer in answers)
        if usable >= self.quorum.min_answers:
            return
        failures = "; ".join(
            f"{answer.member}: {error['message']} ({error['code']})"
            for answer in answers
            if (error := answer.error) is not None
        )
        raise QuorumNotReached(
            f"Round {number}: {usable} of the {len(answers)} members asked gave a usable answer; "
            f"this council needs {self.quorum.min_answers}. {failures}"
        )


async def until_begun(first: asyncio.Event, tasks: Sequence[asyncio.Task[None]], seconds: float | None) -> None:
    """Wait until `first` is set, or `seconds` have passed (None: no limit), or no call is left in flight."""
    loop = asyncio.get_running_loop()
    deadline = None if seconds is None else loop.time() + seconds
    waiter = asyncio.ensure_future(first.wait())
    try:
        while not first.is_set():
            pending = [task for task in tasks if not task.done()]
            timeout = None if deadline is None else deadline - loop.time()
            if not pending or (timeout is not None and timeout <= 0):
                return
            await asyncio.wait([waiter, *pending], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()


def others(answers: Sequence[Answer], own: Answer) -> list[Answer]:
    return [answer for answer in answers if answer is not own]


def always() -> bool:
    return True


def ignore(value: dict[str, Any]) -> None:
    return None
