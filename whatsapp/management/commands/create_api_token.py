from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from core.api_tokens import api_token_create


class Command(BaseCommand):
    help = "Make an API key for a user and print it (it is shown only this once)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="command line")

    def handle(self, *args, **opts):
        user = get_user_model().objects.filter(username=opts["username"]).first()
        if user is None:
            raise CommandError(f"no user named {opts['username']!r}")
        _, key = api_token_create(user=user, name=opts["name"])
        self.stdout.write(key)
