"""plan_event: the pure decision of what an event requires (docs/events.md)."""

from typing import Any

import pytest
from pydantic import ValidationError

from service.ingest.events import (
    NOTHING_STORED,
    ActivityState,
    ApplyUpdates,
    Deauthorize,
    DeleteActivity,
    Hydrate,
    Ignore,
    Owner,
    Unconfirmed,
    WebhookEvent,
    plan_event,
)
from service.models import AthleteStatus, RemovalReason

ACTIVITY = 16181809559
OWNER = 134815
T = 1_700_000_000
CONNECTED = Owner(AthleteStatus.CONNECTED, read_all=True)
READ_ONLY = Owner(AthleteStatus.CONNECTED, read_all=False)
STORED = ActivityState(stored=True, event_time=T, synced_event_time=T, visibility="everyone")


def event(aspect: str, updates: dict[str, Any] | None = None, **kw: Any) -> WebhookEvent:
    return WebhookEvent(
        object_type=kw.pop("object_type", "activity"),
        object_id=kw.pop("object_id", ACTIVITY),
        aspect_type=aspect,
        owner_id=OWNER,
        subscription_id=1,
        event_time=kw.pop("event_time", T + 10),
        updates=updates or {},
    )


def plan(e: WebhookEvent, owner: Owner = CONNECTED, activity: ActivityState = STORED) -> Any:
    return plan_event(e, owner, activity)


def test_a_create_hydrates() -> None:
    assert plan(event("create"), activity=NOTHING_STORED) == Hydrate(ACTIVITY)


def test_a_create_for_a_stored_activity_hydrates_again() -> None:
    assert plan(event("create")) == Hydrate(ACTIVITY)


def test_a_title_update_of_a_stored_activity_is_applied_locally() -> None:
    action = plan(event("update", {"title": "Messy"}))

    assert action == ApplyUpdates(ACTIVITY, T + 10, {"name": "Messy"}, ("title",))


def test_a_type_update_sets_type_and_sport_type() -> None:
    action = plan(event("update", {"type": "Walk"}))

    assert isinstance(action, ApplyUpdates)
    assert action.values == {"type": "Walk", "sport_type": "Walk"}


@pytest.mark.parametrize("private", ["true", True])
def test_private_true_makes_the_activity_only_me(private: object) -> None:
    action = plan(event("update", {"private": private}))

    assert isinstance(action, ApplyUpdates)
    assert action.values == {"private": True, "visibility": "only_me"}


def test_private_false_keeps_a_visible_activitys_visibility() -> None:
    followers = ActivityState(stored=True, synced_event_time=T, visibility="followers_only")

    action = plan(event("update", {"private": "false"}), activity=followers)

    assert isinstance(action, ApplyUpdates)
    assert action.values == {"private": False, "visibility": "followers_only"}


def test_private_false_from_only_me_assumes_the_narrower_followers_only() -> None:
    hidden = ActivityState(stored=True, synced_event_time=T, visibility="only_me")

    action = plan(event("update", {"private": "false"}), activity=hidden)

    assert isinstance(action, ApplyUpdates)
    assert action.values == {"private": False, "visibility": "followers_only"}


def test_title_type_and_private_together_are_applied_together() -> None:
    action = plan(event("update", {"title": "A", "type": "Run", "private": "true"}))

    assert isinstance(action, ApplyUpdates)
    assert set(action.keys) == {"title", "type", "private"}


def test_an_update_for_an_activity_we_do_not_have_hydrates() -> None:
    action = plan(event("update", {"title": "Messy"}), activity=NOTHING_STORED)

    assert action == Hydrate(ACTIVITY)


@pytest.mark.parametrize(
    "updates",
    [{"sport_type": "Walk"}, {"title": "A", "description": "x"}, {}],
    ids=["undocumented key", "with another key", "empty"],
)
def test_an_update_with_other_keys_hydrates(updates: dict[str, Any]) -> None:
    assert plan(event("update", updates)) == Hydrate(ACTIVITY)


@pytest.mark.parametrize("updates", [{"private": "maybe"}, {"title": 5}, {"type": ""}], ids=str)
def test_an_update_with_values_strava_does_not_send_hydrates(updates: dict[str, Any]) -> None:
    assert plan(event("update", updates)) == Hydrate(ACTIVITY)


def test_an_update_older_than_the_last_local_change_of_that_key_is_ignored() -> None:
    renamed = ActivityState(stored=True, synced_event_time=T, update_times={"title": T + 20})

    action = plan(event("update", {"title": "old"}, event_time=T + 15), activity=renamed)

    assert isinstance(action, Ignore)


def test_an_older_update_still_applies_keys_no_newer_event_set() -> None:
    renamed = ActivityState(stored=True, synced_event_time=T, update_times={"title": T + 20})

    action = plan(
        event("update", {"title": "old", "private": "true"}, event_time=T + 15), activity=renamed
    )

    assert isinstance(action, ApplyUpdates)
    assert action.keys == ("private",)


def test_an_update_of_the_same_second_as_the_stored_one_wins() -> None:
    renamed = ActivityState(stored=True, synced_event_time=T, update_times={"title": T})

    action = plan(event("update", {"title": "later"}, event_time=T), activity=renamed)

    assert isinstance(action, ApplyUpdates)


def test_an_event_older_than_the_last_fetch_is_ignored() -> None:
    fetched = ActivityState(stored=True, event_time=T + 30, synced_event_time=T + 30)

    for e in (event("update", {"title": "old"}), event("create"), event("update", {"x": 1})):
        assert isinstance(plan(e, activity=fetched), Ignore)


def test_a_delete_removes_the_activity_as_deleted_with_activity_read_all() -> None:
    action = plan(event("delete"))

    assert action == DeleteActivity(ACTIVITY, T + 10, RemovalReason.DELETED)


def test_a_delete_with_only_activity_read_may_mean_made_only_you() -> None:
    action = plan(event("delete"), owner=READ_ONLY)

    assert action == DeleteActivity(ACTIVITY, T + 10, RemovalReason.HIDDEN)


def test_a_delete_for_an_activity_we_do_not_have_still_leaves_a_tombstone() -> None:
    action = plan(event("delete"), activity=NOTHING_STORED)

    assert isinstance(action, DeleteActivity)


def test_a_delete_older_than_a_newer_event_for_the_activity_is_ignored() -> None:
    recreated = ActivityState(stored=True, event_time=T + 30, synced_event_time=T + 30)

    assert isinstance(plan(event("delete", event_time=T + 5), activity=recreated), Ignore)


def test_a_delete_older_than_a_pending_create_is_ignored() -> None:
    pending = ActivityState(stored=False, event_time=T + 30)

    assert isinstance(plan(event("delete", event_time=T + 5), activity=pending), Ignore)


@pytest.mark.parametrize("aspect", ["create", "update"])
def test_an_event_not_newer_than_the_removal_is_ignored(aspect: str) -> None:
    removed = ActivityState(removed_event_time=T + 10)

    assert isinstance(plan(event(aspect, event_time=T + 10), activity=removed), Ignore)


def test_a_create_after_the_removal_restores_the_activity() -> None:
    hidden = ActivityState(removed_event_time=T + 10)

    assert plan(event("create", event_time=T + 11), activity=hidden) == Hydrate(ACTIVITY)


@pytest.mark.parametrize("authorized", ["false", False])
def test_deauthorization_purges_whether_false_is_a_string_or_a_boolean(
    authorized: object,
) -> None:
    e = event("update", {"authorized": authorized}, object_type="athlete", object_id=OWNER)

    assert plan(e, activity=NOTHING_STORED) == Deauthorize(OWNER)


def test_deauthorization_of_an_already_deauthorized_owner_purges_again() -> None:
    e = event("update", {"authorized": "false"}, object_type="athlete", object_id=OWNER)

    assert plan(e, owner=Owner(AthleteStatus.DEAUTHORIZED)) == Deauthorize(OWNER)


def test_an_athlete_update_that_is_not_a_deauthorization_is_ignored() -> None:
    e = event("update", {"authorized": "true"}, object_type="athlete", object_id=OWNER)

    assert isinstance(plan(e), Ignore)


@pytest.mark.parametrize("status", [None, AthleteStatus.DEAUTHORIZED])
@pytest.mark.parametrize("aspect", ["create", "update", "delete"])
def test_events_of_unknown_or_deauthorized_owners_are_ignored(
    aspect: str, status: AthleteStatus | None
) -> None:
    assert isinstance(plan(event(aspect, {"title": "x"}), owner=Owner(status)), Ignore)


def test_an_owner_who_must_reconnect_gets_no_fetch_but_local_updates_apply() -> None:
    owner = Owner(AthleteStatus.NEEDS_REAUTH)

    assert isinstance(plan(event("create"), owner=owner), Ignore)
    assert isinstance(plan(event("update", {"title": "x"}), owner=owner), ApplyUpdates)


def test_a_delete_for_an_owner_who_must_reconnect_stays_unconfirmed() -> None:
    """A delete is confirmed by a fetch, and such an owner has no token to fetch with."""
    action = plan(event("delete"), owner=Owner(AthleteStatus.NEEDS_REAUTH))

    assert isinstance(action, Unconfirmed)
    assert "reconnect" in action.reason


@pytest.mark.parametrize(("object_type", "aspect"), [("club", "create"), ("activity", "merge")])
def test_unknown_object_and_aspect_types_are_ignored(object_type: str, aspect: str) -> None:
    assert isinstance(plan(event(aspect, object_type=object_type)), Ignore)


def test_null_updates_read_as_empty() -> None:
    e = WebhookEvent.model_validate(
        {
            "object_type": "activity",
            "object_id": ACTIVITY,
            "aspect_type": "create",
            "owner_id": OWNER,
            "subscription_id": 1,
            "event_time": 1516126040,
            "updates": None,
        }
    )

    assert e.updates == {}


@pytest.mark.parametrize("bad_id", ["12", 1.5, True, -1, 2**63])
def test_ids_must_be_int64_integers(bad_id: object) -> None:
    with pytest.raises(ValidationError) as error:
        WebhookEvent.model_validate(
            {
                "object_type": "activity",
                "object_id": bad_id,
                "aspect_type": "create",
                "owner_id": OWNER,
                "subscription_id": 1,
                "event_time": 1516126040,
            }
        )

    assert error.value.errors()[0]["loc"] == ("object_id",)
