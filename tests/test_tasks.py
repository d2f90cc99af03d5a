"""Waiting for an event with a timeout, and stopping a task: a cancel is never lost."""

from __future__ import annotations

import asyncio

import pytest

from lg_deploy.tasks import cancel_and_wait, wait_for_event


@pytest.mark.req("DUR-SHUTDOWN")
async def test_wait_for_event_says_whether_the_event_was_set() -> None:
    """True once the event is set; False after the timeout while it stays clear."""
    event = asyncio.Event()
    assert await wait_for_event(event, 0.01) is False
    event.set()
    assert await wait_for_event(event, 60) is True


@pytest.mark.req("DUR-SHUTDOWN")
async def test_a_cancel_in_the_step_the_event_is_set_still_cancels() -> None:
    """Set and cancel in one step: the wait raises CancelledError (3.11's wait_for returns)."""
    event = asyncio.Event()
    waiting = asyncio.create_task(wait_for_event(event, 60))
    await asyncio.sleep(0)  # the task's first step: it now waits on the event
    event.set()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting


@pytest.mark.req("DUR-SHUTDOWN")
async def test_a_loop_woken_as_it_is_stopped_stops() -> None:
    """A loop waiting on a wake-up event, woken in the step it is stopped, ends (no hang)."""
    woken = asyncio.Event()
    passes = 0

    async def loop() -> None:
        nonlocal passes
        while True:
            passes += 1
            await wait_for_event(woken, 60)
            woken.clear()

    task = asyncio.create_task(loop())
    await asyncio.sleep(0)
    woken.set()
    async with asyncio.timeout(5):
        await cancel_and_wait(task)
    assert task.cancelled()
    assert passes == 1


@pytest.mark.req("DUR-SHUTDOWN")
async def test_cancel_and_wait_lets_its_own_caller_be_cancelled() -> None:
    """Cancelled while the task is still stopping, the caller is cancelled (not swallowed)."""
    release = asyncio.Event()

    async def slow_to_stop() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            await release.wait()
            raise

    slow = asyncio.create_task(slow_to_stop())
    await asyncio.sleep(0)
    stopping = asyncio.create_task(cancel_and_wait(slow))
    await asyncio.sleep(0)
    stopping.cancel()
    await asyncio.wait({stopping}, timeout=5)
    assert stopping.cancelled()
    release.set()
    await asyncio.wait({slow})
    assert slow.cancelled()


@pytest.mark.req("DUR-SHUTDOWN")
async def test_cancel_and_wait_raises_what_the_task_raised_instead_of_stopping() -> None:
    """A task that fails as it is cancelled: its error reaches the caller."""

    async def fails_on_cancel() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            raise RuntimeError("could not stop cleanly") from None

    task = asyncio.create_task(fails_on_cancel())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="could not stop cleanly"):
        await cancel_and_wait(task)
