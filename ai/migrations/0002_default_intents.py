"""The default intent taxonomy, which the business then edits in the admin. Written out here (not imported)
so that the migration means the same thing whatever the code says later."""

from django.db import migrations

DEFAULTS = [
    ("note", "A note to self: something the sender wants kept or remembered.",
     "note: call the printer about the invoice\nnota: comprar tinta azul"),
    ("request", "A request or an order: to buy, book, deliver, send or change something.",
     "I'd like to order two boxes of tiles\n¿Me pueden enviar el catálogo?"),
    ("task", "A to-do to track: something to be done by someone, often with a due date.",
     "create a task to review the budget by Friday\nlembrar de pagar o fornecedor amanhã"),
    ("question", "A question that asks for information.",
     "What time do you open on Saturday?\nWie lange dauert der Versand?"),
    ("complaint", "Dissatisfaction with a product, a delivery or the service.",
     "My order arrived broken\nYa van tres semanas y nada"),
    ("greeting", "Only a greeting, thanks or goodbye, with nothing else asked.", "Hi!\nObrigado, até logo"),
    ("other", "Anything else.", ""),
]


def add_defaults(apps, schema_editor):
    IntentCategory = apps.get_model("ai", "IntentCategory")
    for position, (name, description, examples) in enumerate(DEFAULTS):
        IntentCategory.objects.get_or_create(name=name, defaults={"description": description, "examples": examples,
                                                                  "position": position * 10})


class Migration(migrations.Migration):
    dependencies = [("ai", "0001_initial")]
    operations = [migrations.RunPython(add_defaults, migrations.RunPython.noop)]
