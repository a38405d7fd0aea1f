from rest_framework.routers import DefaultRouter

from whatsapp.api import gdpr, views

router = DefaultRouter()
router.register("providers", views.ProviderViewSet)
router.register("contacts", views.ContactViewSet)
router.register("contact-mappings", views.ContactUserMappingViewSet)
router.register("conversations", views.ConversationViewSet)
router.register("messages", views.MessageViewSet)
router.register("templates", views.MessageTemplateViewSet)
router.register("exports", gdpr.DataExportViewSet)
router.register("users", gdpr.UserDataViewSet, basename="user-data")

urlpatterns = router.urls
