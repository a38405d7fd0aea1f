from django.core.management.base import BaseCommand, CommandError

from whatsapp.providers import backend_class_for, registered_kinds
from whatsapp.services.providers import ProviderConfigError, provider_create, provider_webhook_url


def _all_options() -> dict:
    options = {}
    for kind in registered_kinds():
        for option in backend_class_for(kind).options:
            options.setdefault(option.name, (option, []))[1].append(kind)
    return options


class Command(BaseCommand):
    help = "Create a provider of one kind and print its webhook URL (the last line of output)."

    def add_arguments(self, parser):
        parser.add_argument("--kind", required=True, choices=registered_kinds())
        parser.add_argument("--name", required=True)
        for name, (option, kinds) in _all_options().items():
            parser.add_argument(option.cli_flag, dest=name, default=None,
                                help=f"{option.help} [{', '.join(kinds)}]")

    def handle(self, *args, **opts):
        kind = opts["kind"]
        allowed = {option.name for option in backend_class_for(kind).options}
        given = {name: opts[name] for name in _all_options() if opts.get(name) not in (None, "")}
        foreign = sorted(set(given) - allowed)
        if foreign:
            flags = ", ".join("--" + name.replace("_", "-") for name in foreign)
            raise CommandError(f"{flags} do(es) not apply to a {kind} provider")
        try:
            provider = provider_create(kind=kind, name=opts["name"], options=given)
        except ProviderConfigError as exc:
            raise CommandError(str(exc)) from exc
        except Exception as exc:
            if "unique" in str(exc).lower():
                raise CommandError(f"a provider named {opts['name']!r} already exists") from exc
            raise
        self.stdout.write(f"Created {provider.get_kind_display()} provider {provider.name!r} (id {provider.pk}).")
        self.stdout.write(provider_webhook_url(provider))
