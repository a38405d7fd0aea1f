"""
An archived row deleted by any path (admin, a cascade from its contact or conversation, a script) takes
its archive object with it (or its member of a bundle, which is rewritten): the deletion is recorded in
the same transaction and retried until done.
A provider saved or deleted leaves the webhook endpoint's cache of providers.
"""

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from whatsapp.models import Media, Provider, WebhookEvent
from whatsapp.services.archive import archived_object_forget
from whatsapp.services.archive_bundles import bundle_member_forget
from whatsapp.services.provider_lookup import provider_cache_invalidate


@receiver(post_delete, sender=Media, dispatch_uid="whatsapp.media_archive_forget")
@receiver(post_delete, sender=WebhookEvent, dispatch_uid="whatsapp.webhook_event_archive_forget")
def forget_archived_object(sender, instance, **kwargs):
    if getattr(instance, "archive_bundle_id", None):
        # One body of a bundle: the bundle is rewritten without it (others' bodies share the object).
        bundle_member_forget(instance.archive_bundle_id)
    elif instance.archive_path:
        archived_object_forget(instance.archive_path, reason=f"{sender._meta.label} {instance.pk} deleted")


# Provider fields the webhook endpoint never reads: saving only these leaves its cache alone.
NOT_READ_BY_WEBHOOKS = frozenset({"is_paused", "rate_limit_per_second", "circuit_state", "circuit_failures",
                                  "circuit_opened_at", "circuit_retry_at", "circuit_last_error",
                                  "verification_status", "updated_at"})


@receiver(post_save, sender=Provider, dispatch_uid="whatsapp.provider_cache_save")
@receiver(post_delete, sender=Provider, dispatch_uid="whatsapp.provider_cache_delete")
def forget_cached_provider(sender, instance, update_fields=None, **kwargs):
    if update_fields is not None and set(update_fields) <= NOT_READ_BY_WEBHOOKS:
        return
    # Now for this process, and again once committed: another process must not re-read the old row
    # between our bump and our commit and keep it under the new generation.
    provider_cache_invalidate()
    transaction.on_commit(provider_cache_invalidate)
