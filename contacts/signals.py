"""The auto-mapping rules run when a user appears or changes (their email, or their profile's phone); a
deleted user's contacts go back to the unmapped queue (their data stays: erasing is only ever the GDPR
erase action); a data export deleted by any path takes its zip with it; a consent keyword saved or deleted
is seen by the next message."""

from django.conf import settings
from django.db.models.signals import post_delete, post_save, pre_delete
from django.dispatch import receiver

from contacts.models import ConsentKeyword, DataExport, UserProfile
from contacts.services.consent import keyword_words
from contacts.services.mapping import mapping_auto_for_user
from contacts.services.user_deletion import mappings_release_for_user
from whatsapp.services.archive import archived_object_forget


@receiver(post_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="contacts.map_on_user_save")
def map_on_user_save(sender, instance, raw=False, update_fields=None, **kwargs):
    # A login saves only last_login: nothing the rules look at.
    if not raw and (update_fields is None or {"email", "is_active"} & set(update_fields)):
        mapping_auto_for_user(instance)


@receiver(post_save, sender=UserProfile, dispatch_uid="contacts.map_on_profile_save")
def map_on_profile_save(sender, instance, raw=False, **kwargs):
    if not raw:
        mapping_auto_for_user(instance.user)


@receiver(pre_delete, sender=settings.AUTH_USER_MODEL, dispatch_uid="contacts.unmap_on_user_delete")
def unmap_on_user_delete(sender, instance, **kwargs):
    # Whatever deletes the account (the admin, the shell, a cascade), its mappings would otherwise vanish
    # in the cascade unaudited; here they end as a person unmapping would end them. The admin calls the
    # service itself first, with who deleted, and this call then finds nothing left to do.
    mappings_release_for_user(instance, actor=None)


@receiver(post_delete, sender=DataExport, dispatch_uid="contacts.data_export_zip_forget")
def forget_export_zip(sender, instance, **kwargs):
    # Whatever deleted the row (the admin, a deleted user's cascade, an erasure, a script), the zip's
    # deletion is recorded in the same transaction and retried until the storage confirms it. An expired
    # export is not deleted: data_exports_expire schedules its zip's deletion and clears its location.
    if instance.location:
        archived_object_forget(instance.location, reason=f"data export {instance.pk} deleted")


@receiver(post_save, sender=ConsentKeyword, dispatch_uid="contacts.keyword_words_save")
@receiver(post_delete, sender=ConsentKeyword, dispatch_uid="contacts.keyword_words_delete")
def forget_keyword_words(sender, instance, **kwargs):
    keyword_words.forget()
