"""The API at /api/v1/: one router over every app's viewsets, in the order the API root lists them."""

from django.urls import path
from rest_framework.routers import DefaultRouter

from ai import api as ai_api
from analytics.api.views import FIGURES, figure_view
from assistant.api import views as assistant_views
from campaigns.api import views as campaigns_views
from contacts.api import gdpr
from contacts.api import views as contacts_views
from core.api.keys import ApiKeyViewSet
from templates_app.api import views as templates_views
from whatsapp.api import views as whatsapp_views

router = DefaultRouter()
router.register("providers", whatsapp_views.ProviderViewSet)
router.register("contacts", contacts_views.ContactViewSet)
router.register("contact-mappings", contacts_views.ContactUserMappingViewSet)
router.register("conversations", whatsapp_views.ConversationViewSet)
router.register("resolutions", whatsapp_views.ResolutionViewSet)
router.register("teams", whatsapp_views.TeamViewSet)
router.register("messages", whatsapp_views.MessageViewSet)
router.register("labels", whatsapp_views.LabelViewSet)
router.register("saved-replies", whatsapp_views.SavedReplyViewSet)
router.register("templates", templates_views.MessageTemplateViewSet)
router.register("exports", gdpr.DataExportViewSet)
router.register("users", gdpr.UserDataViewSet, basename="user-data")
router.register("message-insights", ai_api.MessageInsightViewSet)
router.register("ai-intents", ai_api.IntentViewSet)
router.register("ai-calls", ai_api.AiCallViewSet)
router.register("projects", assistant_views.ProjectViewSet)
router.register("goals", assistant_views.GoalViewSet)
router.register("tasks", assistant_views.TaskViewSet)
router.register("notes", assistant_views.NoteViewSet)
router.register("content-requests", assistant_views.ContentRequestViewSet)
router.register("reminders", assistant_views.ReminderViewSet)
router.register("assistant-preferences", assistant_views.AssistantProfileViewSet)
router.register("assistant-turns", assistant_views.TurnViewSet)
router.register("segments", campaigns_views.SegmentViewSet)
router.register("audiences", campaigns_views.AudienceImportViewSet)
router.register("campaigns", campaigns_views.CampaignViewSet)
router.register("marketing-suppressions", campaigns_views.SuppressionViewSet)
router.register("api-keys", ApiKeyViewSet, basename="api-key")

urlpatterns = [
    path("conversations/<int:pk>/suggestions/", ai_api.ConversationSuggestionsView.as_view(),
         name="conversation-suggestions"),
    path("conversations/<int:pk>/summaries/", ai_api.ConversationSummariesView.as_view(),
         name="conversation-summaries"),
    *[path(f"analytics/{name}/", figure_view(name), name=f"analytics-{name}") for name in FIGURES],
    *router.urls,
]
