"""The consent keywords every installation starts with (admins edit them or add languages in the admin),
and the default groups' permissions on the new contact models."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

DEFAULTS = {
    "en": (["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPT OUT", "OPTOUT"],
           ["START", "UNSTOP", "SUBSCRIBE"],
           "You will not receive any more messages from us. Reply START to subscribe again.",
           "You are subscribed again. Reply STOP at any time to unsubscribe."),
    "es": (["BAJA", "PARAR", "DETENER", "CANCELAR", "ALTO"],
           ["ALTA", "INICIAR", "REANUDAR"],
           "No recibirás más mensajes nuestros. Responde ALTA para suscribirte de nuevo.",
           "Te has suscrito de nuevo. Responde BAJA cuando quieras darte de baja."),
    "pt": (["SAIR", "PARE", "CANCELAR", "DESCADASTRAR"],
           ["VOLTAR", "RETOMAR"],
           "Você não receberá mais mensagens nossas. Responda VOLTAR para se inscrever novamente.",
           "Sua inscrição foi reativada. Responda SAIR a qualquer momento para cancelar."),
    "fr": (["ARRET", "DESABONNER", "DESINSCRIRE"],
           ["REPRENDRE", "ABONNER"],
           "Vous ne recevrez plus de messages de notre part. Répondez REPRENDRE pour vous réabonner.",
           "Vous êtes de nouveau abonné. Répondez ARRET à tout moment pour vous désabonner."),
    "de": (["ABMELDEN", "STOPP", "BEENDEN"],
           ["ANMELDEN", "WEITER"],
           "Sie erhalten keine Nachrichten mehr von uns. Antworten Sie ANMELDEN, um sie wieder zu erhalten.",
           "Sie sind wieder angemeldet. Antworten Sie jederzeit ABMELDEN, um sich abzumelden."),
}


def add_defaults(apps, schema_editor):
    ConsentKeyword = apps.get_model("contacts", "ConsentKeyword")
    rows = []
    for language, (opt_out, opt_in, out_text, in_text) in DEFAULTS.items():
        rows += [ConsentKeyword(language=language, keyword=word, action="opt_out", confirmation=out_text)
                 for word in opt_out]
        rows += [ConsentKeyword(language=language, keyword=word, action="opt_in", confirmation=in_text)
                 for word in opt_in]
    ConsentKeyword.objects.bulk_create(rows, ignore_conflicts=True)


def remove_defaults(apps, schema_editor):
    ConsentKeyword = apps.get_model("contacts", "ConsentKeyword")
    for language, (opt_out, opt_in, _out, _in) in DEFAULTS.items():
        ConsentKeyword.objects.filter(language=language, keyword__in=opt_out + opt_in).delete()


GROUP_PERMISSIONS = {
    "Operator": ["view_consentevent", "view_consentkeyword", "view_userprofile", "view_verificationchallenge"],
    "Admin": [f"{action}_{model}" for model in ("consentevent", "consentkeyword", "userprofile",
                                                "verificationchallenge")
              for action in ("view", "add", "change", "delete")],
}


def grant_group_permissions(apps, schema_editor):
    contacts = apps.get_app_config("contacts")
    contacts.models_module = True
    create_permissions(contacts, apps=apps, verbosity=0)
    contacts.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codenames in GROUP_PERMISSIONS.items():
        group = Group.objects.filter(name=name).first()
        if group is not None:
            group.permissions.add(*Permission.objects.filter(content_type__app_label="contacts",
                                                             codename__in=codenames))


class Migration(migrations.Migration):
    dependencies = [("contacts", "0003_consent_mapping_verification"), ("whatsapp", "0002_default_groups")]
    operations = [migrations.RunPython(add_defaults, remove_defaults),
                  migrations.RunPython(grant_group_permissions, migrations.RunPython.noop)]
