"""The messaging core reaches the apps above it only through hooks those apps register."""

import pytest

from ai import hooks as ai_hooks
from ai.services import pipeline
from assistant.services import export as assistant_export
from assistant.services import handoff, intake
from campaigns.services import reactions
from campaigns.services import results as campaign_results
from contacts import hooks as contacts_hooks
from contacts.services import followups
from core.hooks import Hook
from templates_app.services.sync import template_status_apply
from whatsapp import hooks


def test_receivers_run_in_registration_order_and_errors_reach_the_caller():
    hook = Hook("example")
    calls = []
    hook.register(lambda **kwargs: calls.append(("first", kwargs)))
    hook.register(lambda **kwargs: calls.append(("second", kwargs)))
    hook.fire(message=1)
    assert calls == [("first", {"message": 1}), ("second", {"message": 1})]

    def broken(**_kwargs):
        raise RuntimeError("receiver failed")

    hook.register(broken)
    with pytest.raises(RuntimeError, match="receiver failed"):
        hook.fire(message=2)


def test_a_receiver_registered_twice_runs_once():
    hook = Hook("example")
    calls = []

    def receiver(**_kwargs):
        calls.append(1)

    hook.register(receiver)
    hook.register(receiver)
    hook.fire()
    assert calls == [1]


def test_the_apps_plug_their_behaviour_into_the_core():
    # Contacts react first (a STOP is honoured before anything else), then the AI is asked to look, then the
    # assistant (which reads what the contacts side decided: a consent keyword, a new mapping).
    # Campaigns hear replies and failures last: what the contacts side decided (an opt-out) is known by then.
    assert hooks.inbound_message_saved.receivers == (followups.inbound_followups, pipeline.on_inbound_message,
                                                     intake.on_inbound_message, reactions.reply_attribute)
    assert ai_hooks.message_understood.receivers == (intake.on_message_understood,)
    assert hooks.human_reply_recorded.receivers == (handoff.on_human_reply,)
    assert contacts_hooks.user_export_sections.receivers == (assistant_export.user_sections,
                                                             campaign_results.user_sections)
    assert hooks.media_stored.receivers == (pipeline.on_media_stored,)
    assert hooks.status_failed_reported.receivers == (followups.status_failed_followups,
                                                      reactions.send_failure_reaction)
    assert hooks.send_failed.receivers == (followups.send_failed_followups, reactions.send_failure_reaction)
    assert hooks.template_status_reported.receivers == (template_status_apply,)
