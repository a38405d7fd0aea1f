"""The two-factor pages, under the admin's address (config/urls.py includes them at admin/two-factor/)."""

from django.contrib import admin
from django.urls import path

from accounts import views

app_name = "accounts"

urlpatterns = [
    path("", admin.site.admin_view(views.two_factor_page), name="two_factor"),
    path("verify/", admin.site.admin_view(views.verify_page), name="two_factor_verify"),
    path("enrol/", admin.site.admin_view(views.enrol_page), name="two_factor_enrol"),
    path("enrol/qr.svg", admin.site.admin_view(views.enrol_qr), name="two_factor_enrol_qr"),
    path("backup-codes/", admin.site.admin_view(views.backup_codes_page), name="two_factor_backup_codes"),
]
