"""
The monitoring admin: alert rules (editable, with an *Evaluate now* action) and the incidents they opened
(read-only, with their notices).

Importing this package (Django's admin autodiscovery does) registers every page.
"""

from monitoring.admin import alerts  # noqa: F401  (the module registers its pages with the admin site)
