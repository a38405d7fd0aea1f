from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from monitoring.views import health
from whatsapp.views import ProviderWebhookView, outbound_media, simulated_media

admin.site.site_header = "WhatsApp business messaging"
admin.site.site_title = "WhatsApp platform"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("health/", health, name="health"),
    path("webhooks/<str:kind>/<uuid:public_id>/", ProviderWebhookView.as_view(), name="provider-webhook"),
    path("media/out/<str:token>/", outbound_media, name="outbound-media"),
    path("simulator/<uuid:public_id>/media/<str:token>/", simulated_media, name="simulated-media"),
    path("api/v1/", include("config.api")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]
