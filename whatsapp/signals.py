"""An archived row deleted by any path (admin, a cascade from its contact or conversation, a script) takes
its archive object with it: the deletion is recorded in the same transaction and retried until done."""

from django.db.models.signals import post_delete
from django.dispatch import receiver

from whatsapp.models import Media, WebhookEvent
from whatsapp.services.archive import archived_object_forget


@receiver(post_delete, sender=Media, dispatch_uid="whatsapp.media_archive_forget")
@receiver(post_delete, sender=WebhookEvent, dispatch_uid="whatsapp.webhook_event_archive_forget")
def forget_archived_object(sender, instance, **kwargs):
    if instance.archive_path:
        archived_object_forget(instance.archive_path, reason=f"{sender._meta.label} {instance.pk} deleted")
