"""Real aiogram and python-telegram-bot bots fed offline while their PostgreSQL hangs.

Shared by ``tests/test_stall_bots.py`` and ``benchmarks/bench_stall.py``. A bot handle is
connected through a :class:`~stallproxy.StallProxy`; a feeder sends updates from users whose
role is cached, one after another, as fast as the bot answers, while a second task sends an
update from a new user (a miss) every ``miss_every`` seconds, each as a task of its own (as
the frameworks' pollers do). The run has phases (healthy, the proxy stopped, a table lock held
by another session, ...); :func:`drive` says how many cached users were answered per second in
each, and how each miss was answered and how long it took.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from tgfakes import aiogram_bot, aiogram_update, ptb_application, ptb_request, ptb_update

#: Users whose role the bot has cached before the run.
CACHED = range(1, 201)
#: New users (misses) are numbered from here.
FIRST_MISS = 1_000_000


@dataclass
class Miss:
    phase: str
    started: float
    took: float | None = None
    answer: str | None = None


@dataclass
class Run:
    """What :func:`drive` measured: cached answers and seconds per phase, and every miss."""

    answered: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    misses: list[Miss] = field(default_factory=list)
    #: The longest wait, per phase, between two cached answers (or a phase's edge and one).
    gaps: dict[str, float] = field(default_factory=dict)

    def rate(self, phase: str) -> float:
        return self.answered[phase] / self.seconds[phase]


Phase = tuple[str, float, Callable[[], Any], Callable[[], Any]]  # name, seconds, enter, leave


class Bot:
    """One framework's bot: ``await say(uid)`` feeds one update and returns the answer."""

    say: Callable[[int], Awaitable[str]]
    start: Callable[[], Awaitable[None]]
    stop: Callable[[], Awaitable[None]]


def aiogram_moderation_bot(roles: Any) -> Bot:
    """An aiogram bot with the rolectl middleware, ``HasRole`` and, as most aiogram bots
    have, a synchronous magic filter (``F.text``: aiogram runs it in the loop's default
    executor)."""
    from aiogram import Dispatcher, F
    from aiogram.filters import Command
    from aiogram.types import Message

    from rolectl.integrations.aiogram import HasRole, setup

    dp, tg = Dispatcher(), aiogram_bot()
    setup(dp, roles)

    @dp.message(Command("ban"), F.text, HasRole("admin"))
    async def ban(message: Message) -> None:
        await message.answer("banned")

    @dp.message(Command("ban"), F.text)
    async def refuse(message: Message, role: str) -> None:
        await message.answer(f"admins only (you are {role})")

    bot = Bot()

    async def say(uid: int) -> str:
        before = len(tg.session.requests)
        await dp.feed_update(tg, aiogram_update(uid, "/ban 1"))
        for method in tg.session.requests[before:]:
            if getattr(method, "chat_id", None) == uid:
                return str(method.text)
        return ""

    async def start() -> None:
        await dp.emit_startup(bot=tg)

    async def stop() -> None:
        await dp.emit_shutdown(bot=tg)

    bot.say, bot.start, bot.stop = say, start, stop
    return bot


def ptb_moderation_bot(roles: Any) -> Bot:
    """A python-telegram-bot application with ``install`` and ``require_role``."""
    from telegram import Update
    from telegram.ext import CommandHandler, ContextTypes

    from rolectl.integrations.telegram import install, require_role, role_of

    request = ptb_request()
    app = ptb_application(request)
    install(app, roles)
    answers: dict[int, str] = {}

    async def reply(update: Update, text: str) -> None:
        assert update.effective_user is not None and update.effective_message is not None
        answers[update.effective_user.id] = text
        await update.effective_message.reply_text(text)

    async def deny(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await reply(update, f"admins only (you are {role_of(context)})")

    @require_role("admin", on_denied=deny)
    async def ban(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await reply(update, "banned")

    app.add_handler(CommandHandler("ban", ban))
    bot = Bot()

    async def say(uid: int) -> str:
        answers.pop(uid, None)
        await app.process_update(ptb_update(app, uid, "/ban 1"))
        return answers.get(uid, "")

    async def start() -> None:
        await app.initialize()
        assert app.post_init is not None
        await app.post_init(app)

    async def stop() -> None:
        assert app.post_shutdown is not None
        await app.post_shutdown(app)
        await app.shutdown()

    bot.say, bot.start, bot.stop = say, start, stop
    return bot


async def drive(
    bot: Bot,
    phases: list[Phase],
    *,
    miss_every: float = 0.1,
    pace: float = 0.0,
    until: Callable[[Run, str], bool] | None = None,
    longest: float = 60.0,
) -> Run:
    """Feed ``bot`` through ``phases`` (each entered, run for its seconds, left); then wait
    for every miss still in flight. Cached users are asked back to back, ``pace`` seconds
    apart: 0 measures throughput (benchmarks); a test that measures only the longest gap
    between answers paces them, not to spin a core for the whole run. ``until(run, phase)``:
    a phase also lasts until it holds (what a test counts in it, on a machine too busy to get
    there in the phase's seconds), for at most ``longest`` seconds."""
    for uid in CACHED:  # warm the cache: these users are answered from memory from now on
        assert await bot.say(uid) == "admins only (you are user)"
    run = Run()
    phase = ""
    stop = asyncio.Event()
    next_miss = iter(range(FIRST_MISS, FIRST_MISS + 10**6))
    tasks: list[asyncio.Task[None]] = []
    last = time.monotonic()  # when a cached user was last answered, or the phase began

    def gap(now: float) -> None:
        nonlocal last
        run.gaps[phase] = max(run.gaps.get(phase, 0.0), now - last)
        last = now

    async def one_miss(miss: Miss, uid: int) -> None:
        miss.answer = await bot.say(uid)
        miss.took = time.monotonic() - miss.started

    async def misses() -> None:
        while not stop.is_set():
            miss = Miss(phase, time.monotonic())
            run.misses.append(miss)
            tasks.append(asyncio.create_task(one_miss(miss, next(next_miss))))
            try:
                await asyncio.wait_for(stop.wait(), miss_every)
            except asyncio.TimeoutError:
                pass

    async def cached() -> None:
        users = list(CACHED)
        i = 0
        while not stop.is_set():
            uid = users[i % len(users)]
            i += 1
            if await bot.say(uid) == "admins only (you are user)":
                run.answered[phase] = run.answered.get(phase, 0) + 1
                gap(time.monotonic())
            await asyncio.sleep(pace)  # a poller awaits the network between updates: let the loop run

    feeders: list[asyncio.Task[None]] = []
    for name, seconds, enter, leave in phases:
        # On the loop, not in a thread: the default executor is what a hung bot may lack.
        enter()
        phase = name
        run.answered.setdefault(name, 0)
        started = last = time.monotonic()
        if not feeders:
            feeders = [asyncio.create_task(cached()), asyncio.create_task(misses())]
        await asyncio.sleep(seconds)
        while until is not None and not until(run, name) and time.monotonic() - started < longest:
            await asyncio.sleep(0.05)
        run.seconds[name] = time.monotonic() - started
        gap(time.monotonic())
        phase = f"after {name}"
        leave()
    stop.set()
    await asyncio.gather(*feeders)
    await asyncio.wait_for(asyncio.gather(*tasks), 60)
    return run


def nothing() -> None:
    return None
