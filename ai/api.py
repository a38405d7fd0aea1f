"""
The AI's API: a conversation's reply suggestions and summaries (asked for with a POST, made by a worker,
polled with a GET), each message's insight, the intent taxonomy and the usage ledger.
"""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, viewsets
from rest_framework.response import Response
from rest_framework.views import APIView

from ai.models import AiCall, AiRequest, ConversationSummary, IntentCategory, MessageInsight, ReplySuggestion
from ai.selectors import latest_request
from ai.services.requests import AiUnavailable, ai_request_create
from core.access import scoped
from core.api.errors import ReadableErrors, refuse
from core.api.permissions import requires
from core.api.scoping import TeamScoped
from whatsapp.models import Conversation


class ReplySuggestionSerializer(serializers.ModelSerializer):
    kind = serializers.SerializerMethodField()
    template_name = serializers.CharField(source="template.name", default=None, read_only=True)
    template_language = serializers.CharField(source="template.language", default=None, read_only=True)

    class Meta:
        model = ReplySuggestion
        fields = ["position", "kind", "text", "language", "template", "template_name", "template_language",
                  "template_variables", "for_message", "created_at"]

    def get_kind(self, suggestion: ReplySuggestion) -> str:
        return "template" if suggestion.template_id else "text"


class AiRequestSerializer(serializers.ModelSerializer):
    class Meta:
        model = AiRequest
        fields = ["id", "conversation", "kind", "status", "error", "trigger", "created_at", "finished_at"]


class SuggestionsSerializer(serializers.Serializer):
    request = AiRequestSerializer(allow_null=True)
    suggestions = ReplySuggestionSerializer(many=True)


class SummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = ConversationSummary
        fields = ["id", "conversation", "text", "language", "first_message", "last_message", "message_count",
                  "trigger", "model", "created_at"]


class SummariesSerializer(serializers.Serializer):
    request = AiRequestSerializer(allow_null=True)
    summaries = SummarySerializer(many=True)


class MessageInsightSerializer(serializers.ModelSerializer):
    class Meta:
        model = MessageInsight
        fields = ["message", "transcription_status", "transcription_error", "transcript_language", "audio_seconds",
                  "transcription_model", "transcription_cost", "classification_status", "classification_error",
                  "intent", "sentiment", "sentiment_score", "language", "urgency", "extracted",
                  "classification_model", "prompt_version", "updated_at"]


class IntentSerializer(serializers.ModelSerializer):
    class Meta:
        model = IntentCategory
        fields = ["id", "name", "description", "examples", "is_active", "position"]


class AiCallSerializer(serializers.ModelSerializer):
    class Meta:
        model = AiCall
        fields = ["id", "feature", "provider", "message", "conversation", "status", "reason", "model",
                  "prompt_version", "input_tokens", "output_tokens", "audio_seconds", "cost", "latency_ms",
                  "attempt", "created_at"]


class _ConversationAiView(ReadableErrors, APIView):
    """GET: the latest request and its results. POST: ask for new ones (202; poll the GET)."""

    kind: str
    permission_classes = [requires("whatsapp.view_conversation")]

    def get_permissions(self):
        if self.request.method == "POST":
            return [requires("whatsapp.change_conversation")()]
        return super().get_permissions()

    def _conversation(self, pk: int) -> Conversation:
        return get_object_or_404(scoped(Conversation.objects.select_related("provider"), self.request.user), pk=pk)

    def _results(self, conversation: Conversation, request: AiRequest | None) -> dict:
        raise NotImplementedError

    def get(self, request, pk: int):
        conversation = self._conversation(pk)
        return Response(self._results(conversation, latest_request(conversation, self.kind)))

    def post(self, request, pk: int):
        conversation = self._conversation(pk)
        try:
            ai_request = ai_request_create(conversation, self.kind, trigger="api", actor=request.user)
        except AiUnavailable as unavailable:
            return refuse(409, "ai_unavailable", str(unavailable))
        return Response(self._results(conversation, ai_request), status=202)


class ConversationSuggestionsView(_ConversationAiView):
    kind = AiRequest.Kind.SUGGESTIONS

    def _results(self, conversation, request):
        suggestions = request.suggestions.select_related("template").order_by("position") if request else []
        return {"request": AiRequestSerializer(request).data if request else None,
                "suggestions": ReplySuggestionSerializer(suggestions, many=True).data}

    @extend_schema(responses={200: SuggestionsSerializer}, summary="The latest reply suggestions")
    def get(self, request, pk: int):
        return super().get(request, pk)

    @extend_schema(request=None, responses={202: SuggestionsSerializer},
                   summary="Ask for reply suggestions (made by a worker; poll the GET)")
    def post(self, request, pk: int):
        return super().post(request, pk)


class ConversationSummariesView(_ConversationAiView):
    kind = AiRequest.Kind.SUMMARY

    def _results(self, conversation, request):
        summaries = conversation.summaries.order_by("-created_at")[:20]
        return {"request": AiRequestSerializer(request).data if request else None,
                "summaries": SummarySerializer(summaries, many=True).data}

    @extend_schema(responses={200: SummariesSerializer}, summary="The conversation's summaries, newest first")
    def get(self, request, pk: int):
        return super().get(request, pk)

    @extend_schema(request=None, responses={202: SummariesSerializer},
                   summary="Ask for a summary (made by a worker; poll the GET)")
    def post(self, request, pk: int):
        return super().post(request, pk)


class MessageInsightViewSet(TeamScoped, ReadableErrors, viewsets.ReadOnlyModelViewSet):
    queryset = MessageInsight.objects.order_by("-message_id")
    serializer_class = MessageInsightSerializer
    lookup_field = "message"
    filterset_fields = {"intent": ["exact"], "sentiment": ["exact"], "language": ["exact"], "urgency": ["exact"],
                        "classification_status": ["exact"], "transcription_status": ["exact"],
                        "message__conversation": ["exact"]}


class IntentViewSet(TeamScoped, ReadableErrors, viewsets.ReadOnlyModelViewSet):
    """The taxonomy, read-only here: it is edited in the admin, where every change is audited."""

    queryset = IntentCategory.objects.order_by("position", "name")
    serializer_class = IntentSerializer
    filterset_fields = ["is_active"]


class AiCallViewSet(TeamScoped, ReadableErrors, viewsets.ReadOnlyModelViewSet):
    queryset = AiCall.objects.order_by("-created_at", "-id")
    serializer_class = AiCallSerializer
    filterset_fields = {"feature": ["exact"], "status": ["exact"], "provider": ["exact"],
                        "created_at": ["gte", "lte"]}
