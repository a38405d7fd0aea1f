from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from monitoring.csp_reports import csp_report
from monitoring.metrics import prometheus_metrics
from monitoring.views import health
from whatsapp.views import ProviderWebhookView, outbound_media, simulated_media

admin.site.site_header = "WhatsApp business messaging"
admin.site.site_title = "WhatsApp platform"

urlpatterns = [
    # Before the admin, whose catch-all would answer these addresses first.
    path("admin/two-factor/", include("accounts.urls")),
    path("admin/", admin.site.urls),
    path("health/", health, name="health"),
    # Without a slash, where Prometheus looks by default.
    path("metrics", prometheus_metrics, name="metrics"),
    path("csp-report/", csp_report, name="csp-report"),
    path("webhooks/<str:kind>/<uuid:public_id>/", ProviderWebhookView.as_view(), name="provider-webhook"),
    path("media/out/<str:token>/", outbound_media, name="outbound-media"),
    path("simulator/<uuid:public_id>/media/<str:token>/", simulated_media, name="simulated-media"),
    path("api/v1/", include("config.api")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves Swagger UI's start-up script as a file of its own (?script): the content security
    # policy refuses inline scripts.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
]
