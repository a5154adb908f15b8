"""The keyset cursor step (pure): overlap at the boundary second, ties, short pages, ends."""

from service.ingest.backfill import CoveredRange, Cursor, Listed, advance


def page(*items: tuple[int, int]) -> list[Listed]:
    return [Listed(activity_id, start) for activity_id, start in items]


def test_the_first_page_moves_the_boundary_to_its_oldest_second() -> None:
    step = advance(Cursor(), page((5, 500), (4, 400), (3, 300)))

    assert step.cursor == Cursor(boundary=300, page=1, seen=(3,))
    assert step.cursor.before == 301
    assert step.covered == CoveredRange(300, None, frozenset({5, 4, 3}))


def test_the_next_request_overlaps_the_boundary_second_so_ties_are_not_skipped() -> None:
    cursor = Cursor(boundary=300, seen=(3,))

    step = advance(cursor, page((3, 300), (2, 300), (1, 200)))

    assert step.cursor == Cursor(boundary=200, page=1, seen=(1,))
    assert step.covered == CoveredRange(200, 300, frozenset({3, 2, 1}))


def test_a_short_page_with_older_activities_does_not_end_the_listing() -> None:
    step = advance(Cursor(boundary=300, seen=(3,)), page((3, 300), (2, 250)))

    assert not step.cursor.done
    assert step.cursor.boundary == 250


def test_a_short_page_holding_only_the_boundary_activities_does_not_end_the_listing() -> None:
    # Short pages happen before the end (docs/strava.md §4.1): older ones may follow.
    step = advance(Cursor(boundary=300, seen=(3,)), page((3, 300)))

    assert not step.cursor.done
    assert step.cursor == Cursor(boundary=300, page=2, seen=(3,))
    assert step.covered is None


def test_the_page_after_a_boundary_only_page_moves_on_to_older_activities() -> None:
    cursor = Cursor(boundary=300, page=2, seen=(3,))

    step = advance(cursor, page((2, 250), (1, 200)))

    assert step.cursor == Cursor(boundary=200, page=1, seen=(1,))
    assert step.covered == CoveredRange(200, 300, frozenset({3, 2, 1}))


def test_an_empty_page_ends_the_listing_down_to_its_lower_bound() -> None:
    step = advance(Cursor(boundary=300, after=100), [])

    assert step.cursor.done
    assert step.covered == CoveredRange(100, 300, frozenset())


def test_a_second_holding_a_full_page_is_walked_by_page_number() -> None:
    cursor = Cursor(boundary=300, seen=(3,))

    step = advance(cursor, page((3, 300), (2, 300)))

    assert step.cursor == Cursor(boundary=300, page=2, seen=(3, 2))
    assert step.covered is None


def test_the_cursor_survives_its_json_form() -> None:
    cursor = Cursor(boundary=300, page=2, seen=(3, 2), after=10, gone=(9,), done=False)

    assert Cursor.from_json(cursor.to_json()) == cursor
