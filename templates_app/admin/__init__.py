"""
Templates in the admin, one module per screen: a template's pages (templates.py: the list, the
authoring page, the workflow buttons, the history and the audit trail; their panels in panels.py) and
the "Templates awaiting review" screen (review.py). common.py holds what both share; the page queries
are in templates_app.selectors.

Importing this package (Django's admin autodiscovery does) registers every page.
"""

from templates_app.admin import review, templates  # noqa: F401  (each module registers its pages)
