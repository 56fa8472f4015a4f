"""The history checker can fail: each rule catches the history that breaks it (pure logic, no servers)."""

from __future__ import annotations

from tests.history import Op, check, check_final, check_takedowns


def put(client: int, start: float, end: float, version: int, kind: str = "put") -> Op:
    return Op(client, kind, "a", start, end, 200, version)


def read(start: float, version: int, status: int = 200, where: str = "varnish") -> Op:
    return Op(9, "get", "a", start, start + 0.01, status, version, where)


def test_a_correct_history_has_no_violation() -> None:
    history = [
        put(1, 0.0, 0.1, 1),
        put(2, 0.05, 0.3, 2),  # concurrent with the first: any order, distinct versions
        Op(3, "delete", "a", 0.4, 0.5, 200, 3),
        Op(4, "delete", "a", 0.6, 0.7, 200, 3),  # the takedown again: what committed
        read(0.2, 1),  # before the settle time: an older version is allowed
        read(6.0, 3, status=404),
        Op(5, "put-if-match", "a", 0.8, 0.9, 412, None),  # refused: no version to check
    ]
    assert check(history, settle=5.0) == []


def test_two_puts_acknowledging_one_version_are_caught() -> None:
    violations = check([put(1, 0.0, 0.2, 2), put(2, 0.0, 0.3, 2, kind="put-if-match")], settle=5.0)
    assert any(v.startswith("(a)") and "two PUTs" in v for v in violations)


def test_a_write_acknowledged_with_an_older_version_after_a_newer_one_is_caught() -> None:
    violations = check([put(1, 0.0, 0.1, 3), put(2, 0.2, 0.3, 2)], settle=5.0)
    assert any(v.startswith("(a)") for v in violations)


def test_an_older_version_read_after_the_settle_time_is_caught() -> None:
    violations = check([put(1, 0.0, 0.1, 1), put(2, 1.0, 1.1, 2), read(6.2, 1)], settle=5.0)
    assert violations and violations[0].startswith("(b)")
    assert check([put(1, 0.0, 0.1, 1), put(2, 1.0, 1.1, 2), read(5.9, 1)], settle=5.0) == []


def test_a_tier_that_disagrees_with_mongodb_after_quiescence_is_caught() -> None:
    assert check_final([read(10.0, 4)], {"a": (4, True)}) == []
    assert check_final([read(10.0, 3)], {"a": (4, True)})[0].startswith("(c)")
    assert check_final([read(10.0, 4)], {"a": (4, False)})[0].startswith("(c)")


def listing(start: float, *slugs: str) -> Op:
    return Op(9, "get", "front", start, start + 0.01, 200, 7, "varnish", frozenset(slugs))


def test_a_listing_that_shows_a_takedown_after_its_acknowledgement_is_caught() -> None:
    takedown = Op(3, "delete", "a", 1.0, 1.2, 200, 4)
    assert check_takedowns([takedown, listing(1.1, "a"), listing(1.3, "b")]) == []  # during it: either
    assert len(check_takedowns([takedown, listing(1.3, "a", "b")])) == 1
    # A save of it that overlaps the time from the takedown to the read may have published it again.
    assert check_takedowns([takedown, put(1, 1.25, 1.4, 5), listing(1.3, "a")]) == []
    assert len(check_takedowns([takedown, put(1, 0.1, 0.2, 3), listing(1.3, "a")])) == 1
