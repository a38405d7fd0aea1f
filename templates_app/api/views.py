"""The templates API: the authoring and review workflow, provider sync, versions, diffs and previews."""

from django.urls import reverse
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import exceptions, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from core.api.errors import REFUSAL, Conflict, ReadableErrors, validated
from core.api.parsers import printable
from core.api.permissions import requires
from core.api.scoping import TeamScoped
from templates_app.api import serializers
from templates_app.api.filters import MessageTemplateFilter
from templates_app.models import MessageTemplate
from templates_app.preview import template_preview
from templates_app.selectors import versions_of, with_usage
from templates_app.services.sync import templates_sync, templates_sync_all
from templates_app.services.versions import template_diff
from templates_app.services.workflow import (
    AUTHORED_FIELDS,
    REVIEW_PERMISSION,
    TemplateWorkflowError,
    template_approve,
    template_create,
    template_delete,
    template_edit,
    template_reject,
    template_submit_next,
    template_withdraw,
)
from templates_app.validation import TemplateInvalid, template_errors

TEMPLATE_VIEW = "templates_app.view_messagetemplate"
TEMPLATE_CHANGE = "templates_app.change_messagetemplate"
# Refusals about who is asking, not about the template's state.
TEMPLATE_FORBIDDEN_CODES = ("not_a_reviewer", "own_template")
TEMPLATE_STATUS_ACTIONS = "status changes only through the actions submit, withdraw, approve and reject"


def _template_refusal(exc: Exception) -> Exception:
    """The template services' refusals as API answers: broken rules 400, not allowed now 409, not this user 403."""
    if isinstance(exc, TemplateInvalid):
        return exceptions.ValidationError(printable(exc.errors))
    if isinstance(exc, TemplateWorkflowError):
        if exc.code in TEMPLATE_FORBIDDEN_CODES:
            return exceptions.PermissionDenied(str(exc), code=exc.code)
        if exc.code == "reason_required":
            return exceptions.ValidationError({"reason": [str(exc)]})
        return Conflict(str(exc), code=exc.code)
    return exc


def _not_writable(data: dict, allowed: set[str]) -> dict[str, list[str]]:
    errors = {}
    for key in data:
        if key in allowed:
            continue
        if key == "status":
            errors[key] = [f"read-only: {TEMPLATE_STATUS_ACTIONS}"]
        elif key == "provider":
            errors[key] = ["a template stays with its provider; create a template for another provider"]
        elif key in serializers.MessageTemplateSerializer.Meta.fields:
            errors[key] = ["read-only"]
        else:
            errors[key] = ["unknown field"]
    return errors


def _template_form(data, *, template: MessageTemplate | None = None, partial: bool = False) -> dict:
    """The authored fields of a create (no template) or an edit, or a 400 that lists every problem at once:
    the request's own (types, sizes, read-only fields) and every WhatsApp rule the template breaks."""
    form_class = serializers.MessageTemplateCreateSerializer if template is None \
        else serializers.MessageTemplateUpdateSerializer
    form = form_class(data=data, partial=partial)
    valid = form.is_valid()
    if not isinstance(data, dict):
        raise exceptions.ValidationError(printable(form.errors))
    refused = _not_writable(data, set(form.fields))
    if valid and not refused:
        return dict(form.validated_data)
    values = {name: data.get(name, getattr(template, name) if template is not None
                             else MessageTemplate._meta.get_field(name).get_default()) for name in AUTHORED_FIELDS}
    errors = template_errors(**values)
    for field, messages in [*form.errors.items(), *refused.items()]:
        errors.setdefault(field, messages)  # the rules' message on a field says more than the form's
    raise exceptions.ValidationError(printable(errors))


def _templates():
    return (with_usage(MessageTemplate.objects.select_related("created_by", "submitted_by", "reviewed_by"))
            .order_by("name", "language", "-version", "pk"))


TEMPLATE_REFUSALS = {400: REFUSAL, 403: REFUSAL, 404: REFUSAL, 409: REFUSAL}


@extend_schema_view(
    list=extend_schema(
        summary="Templates, every version",
        description="Filter by provider, status (or status__in=a,b), language, category, name (exact or "
                    "name__icontains) and managed_elsewhere; `search` looks in names; `ordering` by name, "
                    "language, version, status, created_at, updated_at or sends_count. Each with its usage "
                    "figures and a preview filled with its examples.",
        responses={200: serializers.MessageTemplateSerializer(many=True), 400: REFUSAL}),
    retrieve=extend_schema(summary="One template version",
                           responses={200: serializers.MessageTemplateSerializer, 404: REFUSAL}),
    create=extend_schema(
        summary="Write a new template (version 1, a draft)",
        description="Checked against WhatsApp's rules: a 400 lists every broken rule under `errors`, keyed by "
                    "field (name, language, category, parameter_format, header, body, footer, buttons, examples, "
                    "components). 409 `templates_managed_elsewhere` for a provider whose templates are written in "
                    "its own tool (Chatwoot) or that has none. Audited. Needs templates_app.add_messagetemplate.",
        request=serializers.MessageTemplateCreateSerializer,
        responses={201: serializers.MessageTemplateSerializer, 400: REFUSAL, 403: REFUSAL, 409: REFUSAL}),
    update=extend_schema(
        summary="Edit a template",
        description="A draft or an internally rejected template is changed in place (200; it goes back to "
                    "draft). A template the provider has decided on (approved, rejected, paused, disabled) gets "
                    "its next version, as a draft (201 with the new version; `Location` names it); the approved "
                    "version stays sendable until its successor is approved. 409 while it is in review or at the "
                    "provider (`wrong_status`), when a newer version exists (`newer_version_exists`) or when it is "
                    "managed elsewhere. Fields left out keep their value. Needs "
                    "templates_app.change_messagetemplate.",
        request=serializers.MessageTemplateUpdateSerializer,
        responses={200: serializers.MessageTemplateSerializer, 201: serializers.MessageTemplateSerializer,
                   **TEMPLATE_REFUSALS}),
    partial_update=extend_schema(
        summary="Edit some of a template's fields", description="As PUT, for the fields given.",
        request=serializers.MessageTemplateUpdateSerializer,
        responses={200: serializers.MessageTemplateSerializer, 201: serializers.MessageTemplateSerializer,
                   **TEMPLATE_REFUSALS}),
    destroy=extend_schema(
        summary="Delete a template the provider never saw",
        description="Only a draft or an internally rejected template that was never at the provider nor in a "
                    "message (409 `wrong_status` / `in_use` otherwise: it is history). Audited. Needs "
                    "templates_app.delete_messagetemplate.",
        responses={204: None, 403: REFUSAL, 404: REFUSAL, 409: REFUSAL}),
)
class MessageTemplateViewSet(TeamScoped, ReadableErrors, viewsets.ModelViewSet):
    action_scopes = {"preview": "read"}  # a POST that changes nothing
    bulk_actions = ("sync",)
    queryset = _templates()
    serializer_class = serializers.MessageTemplateSerializer
    filterset_class = MessageTemplateFilter
    search_fields = ["name"]
    ordering_fields = ["name", "language", "version", "status", "created_at", "updated_at", "sends_count"]

    def handle_exception(self, exc):
        return super().handle_exception(_template_refusal(exc))

    def create(self, request, *args, **kwargs):
        form = _template_form(request.data)
        template = template_create(provider=form.pop("provider"), actor=request.user, **form)
        return self._shown(template, status=201)

    def update(self, request, *args, partial: bool = False, **kwargs):
        template = self.get_object()
        form = _template_form(request.data, template=template, partial=partial)
        edited = template_edit(template, actor=request.user, changes=form)
        return self._shown(edited, status=200 if edited.pk == template.pk else 201)

    def destroy(self, request, *args, **kwargs):
        template_delete(self.get_object(), actor=request.user)
        return Response(status=204)

    @extend_schema(
        summary="Submit: a draft goes to internal review; an internally approved one to the provider again",
        description="draft or internally rejected -> in review (it must pass the rules: 400 otherwise). "
                    "Approved internally (its submission to the provider failed, see `submission_error`) -> "
                    "submitted to the provider again now. 409 `wrong_status` in any other status. Audited. Needs "
                    "templates_app.change_messagetemplate.",
        request=None, responses={200: serializers.MessageTemplateSerializer, **TEMPLATE_REFUSALS})
    @action(detail=True, methods=["post"], permission_classes=[requires(TEMPLATE_CHANGE)])
    def submit(self, request, pk=None):
        return self._shown(template_submit_next(self.get_object(), actor=request.user))

    @extend_schema(summary="Withdraw a template from review (back to draft)",
                   description="409 `wrong_status` unless it is in review. Audited. Needs "
                               "templates_app.change_messagetemplate.",
                   request=None, responses={200: serializers.MessageTemplateSerializer, 403: REFUSAL, 404: REFUSAL,
                                            409: REFUSAL})
    @action(detail=True, methods=["post"], permission_classes=[requires(TEMPLATE_CHANGE)])
    def withdraw(self, request, pk=None):
        return self._shown(template_withdraw(self.get_object(), actor=request.user))

    @extend_schema(
        summary="Approve a template in review; it is then submitted to its provider",
        description="in review -> approved internally; the submission to the provider runs right after (watch "
                    "`status`: submitted, pending, approved...). 403 `own_template` for its author or submitter, "
                    "403 without templates_app.review_messagetemplate, 409 `wrong_status` unless in review. "
                    "Audited.",
        request=None, responses={200: serializers.MessageTemplateSerializer, 403: REFUSAL, 404: REFUSAL, 409: REFUSAL})
    @action(detail=True, methods=["post"], permission_classes=[requires(REVIEW_PERMISSION)])
    def approve(self, request, pk=None):
        seen = validated(serializers.TemplateReviewSerializer, request.data, user=request.user).get("review_version")
        return self._shown(template_approve(self.get_object(), reviewer=request.user, seen=seen))

    @extend_schema(
        summary="Reject a template in review, with the reason its author will read",
        description="in review -> rejected internally; the reason is kept as `review_note`. 400 without a reason, "
                    "403 `own_template` / without templates_app.review_messagetemplate, 409 `wrong_status`. "
                    "Audited.",
        request=serializers.TemplateRejectSerializer,
        responses={200: serializers.MessageTemplateSerializer, **TEMPLATE_REFUSALS})
    @action(detail=True, methods=["post"], permission_classes=[requires(REVIEW_PERMISSION)])
    def reject(self, request, pk=None):
        template = self.get_object()
        form = validated(serializers.TemplateRejectSerializer, request.data, user=request.user)
        return self._shown(template_reject(template, reviewer=request.user, reason=form["reason"],
                                           seen=form.get("review_version")))

    @extend_schema(
        summary="Sync templates with the provider now",
        description="Reads every template of the provider's business account (or, without `provider`, of every "
                    "active provider's): statuses updated, templates created on the provider's side imported, "
                    "missing ones and name conflicts reported. 409 `sync_running` when another sync of that "
                    "account is running (`templates_unsupported` for a provider without templates); 502 "
                    "`provider_error` with the provider's answer when listing failed. Without `provider` the "
                    "answer is always 200, each report saying what happened. Audited. Needs "
                    "templates_app.change_messagetemplate.",
        request=serializers.TemplateSyncRequestSerializer,
        responses={200: serializers.TemplateSyncSerializer, 400: REFUSAL, 403: REFUSAL,
                   409: serializers.TemplateSyncRefusalSerializer, 502: serializers.TemplateSyncRefusalSerializer})
    @action(detail=False, methods=["post"], permission_classes=[requires(TEMPLATE_CHANGE)], filter_backends=[])
    def sync(self, request):
        form = validated(serializers.TemplateSyncRequestSerializer, request.data, user=request.user)
        provider = form.get("provider")
        if provider is None:
            return Response({"reports": [report.as_dict() for report in templates_sync_all(actor=request.user)]})
        report = templates_sync(provider, actor=request.user)
        body = {"reports": [report.as_dict()]}
        if report.skipped:
            code = "templates_unsupported" if report.skip_code == "unsupported" else "sync_running"
            return Response({"code": code, "detail": report.skipped, **body}, status=409)
        if report.error:
            return Response({"code": "provider_error", "detail": report.error, **body}, status=502)
        return Response(body)

    @extend_schema(summary="Every version of this template, newest first", filters=False,
                   responses={200: serializers.MessageTemplateSerializer(many=True), 404: REFUSAL})
    @action(detail=True, methods=["get"], filter_backends=[])
    def versions(self, request, pk=None):
        template = self.get_object()
        versions = versions_of(template).values_list("pk", flat=True)
        page = self.paginate_queryset(_templates().filter(pk__in=versions).order_by("-version", "pk"))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(
        summary="What changed between this version and another, section by section",
        description="`against`: the other version's number (default: the previous version). Sections: category, "
                    "parameter format, header, body, footer, buttons, examples. 404 when that version does not "
                    "exist.",
        filters=False, parameters=[serializers.TemplateDiffQuerySerializer],
        responses={200: serializers.TemplateDiffSerializer, 400: REFUSAL, 404: REFUSAL})
    @action(detail=True, methods=["get"], filter_backends=[])
    def diff(self, request, pk=None):
        template = self.get_object()
        against = validated(serializers.TemplateDiffQuerySerializer, request.query_params,
                            user=request.user).get("against")
        others = versions_of(template)
        other = (others.filter(version=against) if against is not None
                 else others.filter(version__lt=template.version)).first()
        if other is None:
            raise exceptions.NotFound(f"{template} has no version {against}" if against is not None
                                      else f"{template} has no earlier version")
        older, newer = sorted([template, other], key=lambda version: version.version)
        sections = [{"section": section.section, "changed": section.changed,
                     "lines": [{"marker": marker, "text": text} for marker, text in section.lines]}
                    for section in template_diff(older, newer)]
        brief = serializers.TemplateVersionBriefSerializer
        return Response({"older": brief(older).data, "newer": brief(newer).data, "sections": sections})

    @extend_schema(
        summary="Preview and check a template without saving it",
        description="The components filled with `values` (default: the examples) as the phone shows them, and "
                    "every WhatsApp rule the template breaks (as a create would answer them). Needs "
                    "templates_app.view_messagetemplate.",
        request=serializers.TemplatePreviewRequestSerializer,
        responses={200: serializers.TemplatePreviewResponseSerializer, 400: REFUSAL, 403: REFUSAL})
    @action(detail=False, methods=["post"], permission_classes=[requires(TEMPLATE_VIEW)], filter_backends=[])
    def preview(self, request):
        form = validated(serializers.TemplatePreviewRequestSerializer, request.data, user=request.user)
        examples = form.get("examples", {})
        optional = ("name", "language", "category", "parameter_format")
        errors = template_errors(**{name: form.get(name, "") for name in optional}, components=form["components"],
                                 examples=examples)
        # The rules about a field are checked only when it was given (a preview may come before the name).
        errors = {field: messages for field, messages in errors.items() if field not in optional or field in form}
        preview = template_preview(form["components"], form.get("values", examples))
        return Response({"preview": preview.as_dict(), "valid": not errors, "errors": errors})

    def _shown(self, template: MessageTemplate, *, status: int = 200) -> Response:
        """The template as it is now, after a change (a new version is named by `Location`)."""
        body = self.get_serializer(_templates().get(pk=template.pk)).data
        headers = {"Location": reverse("messagetemplate-detail", args=[template.pk])} if status == 201 else None
        return Response(body, status=status, headers=headers)
