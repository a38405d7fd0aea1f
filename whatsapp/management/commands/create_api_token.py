from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from core.api_tokens import ALL_SCOPES, api_token_create


class Command(BaseCommand):
    help = "Make an API key for a user and print it (it is shown only this once)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="command line")
        parser.add_argument("--scope", action="append", choices=ALL_SCOPES, dest="scopes",
                            help="read, send or manage; repeat for several (default: all three)")
        parser.add_argument("--expires-in-days", type=int, default=None,
                            help="0 for a key that never expires (default: API_KEY_DEFAULT_LIFETIME_DAYS)")

    def handle(self, *args, **opts):
        user = get_user_model().objects.filter(username=opts["username"]).first()
        if user is None:
            raise CommandError(f"no user named {opts['username']!r}")
        days = opts["expires_in_days"]
        if days is not None and days < 0:
            raise CommandError("--expires-in-days takes 0 (never) or a number of days")
        expires_at = "default" if days is None else (timezone.now() + timedelta(days=days) if days > 0 else None)
        _, key = api_token_create(user=user, name=opts["name"], scopes=opts["scopes"] or ALL_SCOPES,
                                  expires_at=expires_at)
        self.stdout.write(key)
