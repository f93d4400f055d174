"""Property tests: random interleavings of writes, (lagging, duplicated) event delivery,
lookups, invalidation and in-flight reads, checked against a model of the database.

Interleavings inside a read need no threads: the fetch runs without the cache lock, so a
fetch that takes its snapshot and THEN delivers events reproduces "the event was applied
while the read was in flight" exactly and deterministically.
"""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from rolectl.cache import RoleCache
from rolectl.events import ADMIN_ADDED, ADMIN_REMOVED, MAILBOX_CREATED, Event

USERS = st.integers(min_value=1, max_value=6)
ROLE = st.sampled_from(["user", "admin"])


class Model:
    """The database: current roles, and the log of every change with its seq."""

    def __init__(self) -> None:
        self.roles: dict[int, str] = {}
        self.log: list[Event] = []

    @property
    def head(self) -> int:
        return len(self.log)

    def write(self, user_id: int, role: str | None) -> None:
        seq = self.head + 1
        if role is None:  # a non-role event: only the sequence moves
            self.log.append(Event(seq, "t", MAILBOX_CREATED, user_id))
            return
        self.roles[user_id] = role
        self.log.append(Event(seq, "t", ADMIN_ADDED if role == "admin" else ADMIN_REMOVED, user_id, new_role=role))

    def role_at(self, user_id: int, seq: int) -> str:
        role = "user"
        for event in self.log[:seq]:
            if event.user_id == user_id and event.new_role is not None:
                role = event.new_role
        return role


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("write"), USERS, st.one_of(ROLE, st.none())),
        st.tuples(st.just("deliver"), st.integers(0, 4), st.booleans()),
        st.tuples(
            st.just("get"), USERS, st.lists(st.tuples(st.sampled_from(["write", "deliver"]), USERS, ROLE), max_size=4)
        ),
        st.tuples(st.just("invalidate"), USERS, st.none()),
        st.tuples(st.just("clear"), st.none(), st.none()),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(ops=OPS, versioned=st.booleans(), maxsize=st.one_of(st.none(), st.integers(1, 4)))
# A read that lost to a change while the entry that change left behind was evicted (maxsize=1):
# it used to answer with its own stale role.
@example(
    ops=[
        ("write", 4, "admin"),
        ("deliver", 1, False),
        ("clear", None, None),
        ("get", 4, [("write", 4, "user"), ("write", 1, "user"), ("deliver", 1, "user"), ("deliver", 1, "user")]),
    ],
    versioned=True,
    maxsize=1,
)
def test_cache_never_serves_a_role_the_log_has_moved_past(ops: list, versioned: bool, maxsize: int | None) -> None:
    db = Model()
    delivered = [0]  # how far the follower has got
    cache: RoleCache

    def deliver(count: int, replay_old: bool = False) -> None:
        start = delivered[0]
        batch = db.log[start : start + count]
        if replay_old and start:  # at-least-once delivery: resend something already applied
            batch = db.log[max(0, start - 2) : start] + batch
        cache.apply_many(batch)
        delivered[0] = max(delivered[0], start + len(db.log[start : start + count]))

    during: list[tuple[str, int, str]] = []

    def fetch(user_id: int) -> object:
        role, head = db.roles.get(user_id, "user"), db.head  # the snapshot ...
        for action, uid, new_role in during:  # ... then the world moves on mid-read
            if action == "write":
                db.write(uid, new_role)
            else:
                deliver(1)
        during.clear()
        return (role, head) if versioned else role

    cache = RoleCache(fetch, maxsize=maxsize)
    for op, a, b in ops:
        if op == "write":
            db.write(a, b)
        elif op == "deliver":
            deliver(a, b)
        elif op == "get":
            during[:] = b
            low = delivered[0]
            answer = cache.get_role(a)
            during.clear()  # a hit never read, so nothing happened mid-read
            # Linearizable against the log: the answer is the role at some point between what
            # the cache had been told before the call and the newest database state.
            assert answer in {db.role_at(a, seq) for seq in range(low, db.head + 1)}
            if versioned:
                # With versions, a held entry is never older than what the follower delivered.
                assert answer in {db.role_at(a, seq) for seq in range(delivered[0], db.head + 1)}
        elif op == "invalidate":
            cache.invalidate(a)
        else:
            cache.clear()
        assert cache.stats().in_flight == 0

    deliver(len(db.log))
    assert cache.last_seq == db.head
    # Converged: no stale install survived anywhere.
    for entry in cache.entries():
        assert entry.role == db.roles.get(entry.user_id, "user")
    for uid in range(1, 7):
        assert cache.get_role(uid) == db.roles.get(uid, "user")
    if maxsize is not None:
        assert len(cache) <= maxsize


@settings(max_examples=200, deadline=None)
@given(seqs=st.lists(st.integers(1, 30), max_size=60), data=st.data())
def test_events_apply_in_order_at_most_once(seqs: list[int], data: st.DataObject) -> None:
    roles = {seq: data.draw(ROLE) for seq in set(seqs)}
    cache = RoleCache(lambda uid: "user")
    cache.get_role(1)  # cached: role events set cached users only
    applied = []
    for seq in seqs:
        role = roles[seq]
        if cache.apply(Event(seq, "t", ADMIN_ADDED if role == "admin" else ADMIN_REMOVED, 1, new_role=role)):
            applied.append(seq)
    assert applied == sorted(set(applied))  # strictly increasing: in order, at most once
    assert all(a < b for a, b in zip(applied, applied[1:]))
    s = cache.stats()
    assert s.events_applied + s.events_ignored == len(seqs)
    assert cache.last_seq == (max(seqs) if seqs else 0)
    if applied:
        assert cache.peek(1) == roles[applied[-1]]  # the last applied event wins, never an older one
