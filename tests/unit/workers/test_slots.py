"""The worker's concurrency budget: handler slots free up when a result is produced, the
record stays in hand until it is acked, and a waiting poll loop wakes when a slot frees."""

from __future__ import annotations

import asyncio

from foldflow.workers.handling import Slots


def test_a_publishing_record_frees_its_handler_slot_but_stays_in_hand() -> None:
    slots = Slots(2, publish_factor=2)
    a, b = slots.take(), slots.take()
    assert slots.free == 0
    a.publishing()
    assert (slots.in_use, slots.publishing, slots.free) == (2, 1, 1)
    a.publishing()  # idempotent
    assert slots.publishing == 1
    a.done()
    a.done()  # idempotent
    b.done()
    assert (slots.in_use, slots.publishing, slots.free) == (0, 0, 2)


def test_records_in_hand_are_bounded_while_acks_are_pending() -> None:
    slots = Slots(2, publish_factor=2)
    tickets = []
    for _ in range(4):
        ticket = slots.take()
        ticket.publishing()
        tickets.append(ticket)
    assert slots.free == 0  # 4 = 2 * 2 records wait for acks: fetch no more
    tickets[0].done()
    assert slots.free == 1


async def test_wait_free_wakes_when_a_slot_frees_and_times_out_otherwise() -> None:
    slots = Slots(1)
    ticket = slots.take()
    assert await slots.wait_free(0.01) is False
    asyncio.get_running_loop().call_later(0.01, ticket.publishing)
    assert await asyncio.wait_for(slots.wait_free(5.0), 1.0) is True


async def test_wait_free_keeps_waiting_through_wakeups_that_free_nothing() -> None:
    # An ack of a publishing record wakes the waiter but frees no handler slot: it must
    # keep waiting (not report "full" early, which made the consumer pause its partitions).
    slots = Slots(1, publish_factor=4)
    first = slots.take()
    first.publishing()
    running = slots.take()
    loop = asyncio.get_running_loop()
    loop.call_later(0.01, first.done)  # a wake-up, still no free slot
    loop.call_later(0.05, running.publishing)
    assert await asyncio.wait_for(slots.wait_free(2.0), 1.0) is True
