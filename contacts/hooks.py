"""
What the contacts side asks of the apps above it. Each app registers its receivers in its
`AppConfig.ready()`; contacts fires these and never imports those apps.
"""

from core.hooks import Hook

user_export_sections = Hook(
    "user_export_sections",
    doc="What an app keeps for a user, added to the user's data export: receiver(user) -> a list of "
        "(name, rows): each becomes <name>.json in the archive, a JSON list of the rows (dicts), counted "
        "in the manifest under <name>.",
)
