"""The auto-mapping rules run when a user appears or changes (their email, or their profile's phone)."""

from django.conf import settings
from django.db.models.signals import post_save
from django.dispatch import receiver

from contacts.models import UserProfile
from contacts.services.mapping import mapping_auto_for_user


@receiver(post_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="contacts.map_on_user_save")
def map_on_user_save(sender, instance, raw=False, update_fields=None, **kwargs):
    # A login saves only last_login: nothing the rules look at.
    if not raw and (update_fields is None or {"email", "is_active"} & set(update_fields)):
        mapping_auto_for_user(instance)


@receiver(post_save, sender=UserProfile, dispatch_uid="contacts.map_on_profile_save")
def map_on_profile_save(sender, instance, raw=False, **kwargs):
    if not raw:
        mapping_auto_for_user(instance.user)
