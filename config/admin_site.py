"""
The admin site: its index opens with the analytics dashboard, and the pages people use most are listed
first (messaging, contacts, templates, AI and the assistant), the scheduler and accounts after them.
"""

from django.contrib import admin

from analytics.dashboard import dashboard_context

APP_ORDER = ["whatsapp", "contacts", "templates_app", "ai", "assistant", "analytics", "monitoring",
             "django_celery_beat", "accounts", "auth"]


class PlatformAdminSite(admin.AdminSite):
    index_template = "analytics/admin_index.html"

    def index(self, request, extra_context=None):
        return super().index(request, extra_context={**dashboard_context(request), **(extra_context or {})})

    def get_app_list(self, request, app_label=None):
        apps = super().get_app_list(request, app_label)
        rank = {label: position for position, label in enumerate(APP_ORDER)}
        return sorted(apps, key=lambda app: (rank.get(app["app_label"], len(APP_ORDER)), app["name"]))
